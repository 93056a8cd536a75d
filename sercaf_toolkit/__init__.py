"""sercaf-toolkit: dual-stream speech emotion recognition on SpeechBrain.

A fine-tuned pre-trained speech model (wav2vec2 / HuBERT / WavLM) beside a
network trained from scratch on the log-mel spectrogram, joined by
cross-attention fusion (Yu et al., 2024), as composable SpeechBrain lobes.
"""

import logging

# The one place the version is written: setup.py reads it from here.
__version__ = "0.1.0"


class _DropMessages(logging.Filter):
    """Drops SpeechBrain log lines that are false or noise for this toolkit.

    ``torchvision is not available - cannot save figures`` is logged when
    SpeechBrain is imported, but the toolkit draws its pictures with
    matplotlib; the sampler's "Generating dynamic batches" and "Batch
    quantisation" lines come several times per epoch and say nothing a user
    acts on.
    """

    def __init__(self, *starts):
        super().__init__()
        self.starts = starts

    def filter(self, record):
        return not str(record.msg).startswith(self.starts)


# Installed before SpeechBrain is first imported (it logs on import).
logging.getLogger("speechbrain.utils.train_logger").addFilter(
    _DropMessages("torchvision is not available")
)
logging.getLogger("speechbrain.dataio.sampler").addFilter(
    _DropMessages("DynamicBatchSampler: Generating", "Batch quantisation")
)
