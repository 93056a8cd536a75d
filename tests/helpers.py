"""Checks shared by the test modules."""

import torch


def pad_with_noise(utterances, seed=0):
    """Pads 1-D tensors to one batch with *random* values (not zeros).

    Zeros could hide a stream that reads the padding; noise cannot.
    Returns the batch and SpeechBrain relative lengths.
    """
    generator = torch.Generator().manual_seed(seed)
    longest = max(u.shape[0] for u in utterances)
    batch = torch.randn(len(utterances), longest, generator=generator)
    for row, utterance in zip(batch, utterances):
        row[: utterance.shape[0]] = utterance
    lengths = torch.tensor([u.shape[0] / longest for u in utterances])
    return batch, lengths


def assert_stream_ignores_padding(stream, utterances, atol=1e-4):
    """A padded batch gives each utterance's lone frames, to ``atol``."""
    stream.eval()
    batch, lengths = pad_with_noise(utterances)
    with torch.no_grad():
        feats, mask = stream(batch, lengths)
        for index, utterance in enumerate(utterances):
            alone, alone_mask = stream(utterance.unsqueeze(0))
            valid = int(alone_mask.sum())
            assert alone_mask.shape[1] == valid
            assert int(mask[index].sum()) == valid
            assert mask[index, :valid].all()
            torch.testing.assert_close(
                feats[index, :valid], alone[0], atol=atol, rtol=1e-4
            )
