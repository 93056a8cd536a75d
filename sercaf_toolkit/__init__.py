"""sercaf-toolkit: dual-stream speech emotion recognition on SpeechBrain.

A fine-tuned pre-trained speech model (wav2vec2 / HuBERT / WavLM) beside a
network trained from scratch on the log-mel spectrogram, joined by
cross-attention fusion (Yu et al., 2024), as composable SpeechBrain lobes.
"""

__version__ = "0.1.0"
