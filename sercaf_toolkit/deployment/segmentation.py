"""Speech segmentation of long recordings with a voice-activity detector.

A call, an interview or a meeting is mostly not one emotional utterance:
it holds pauses, silence, hold music. Cut into fixed windows, every pause
gets an emotion. Here the speech is found first, with Silero VAD (the
``silero-vad`` package, whose wheel ships its model; an extra,
``pip install -e ".[vad]"``): gaps shorter than ``min_gap`` seconds are
merged into the speech around them, segments longer than ``max_segment``
are split into equal parts, and the recording is tiled into speech and
non-speech spans. Only speech spans are classified.

Authors
 * sercaf-toolkit developers 2026
"""

import math
import threading
import warnings

from sercaf_toolkit.errors import UserError

SAMPLE_RATE = 16000
INSTALL_HINT = 'pip install -e ".[vad]"'
# Pauses shorter than this stay inside a speech segment: a breath between
# two phrases is not a change of turn.
MIN_GAP = 0.5
# One emotion per segment: longer speech is split, as utterances in the
# training corpora last 1-10 s.
MAX_SEGMENT = 10.0
SEGMENT_MODES = ("vad", "window")

_MODEL = None
# The VAD model keeps a recurrent state between chunks: one recording at
# a time (a server's threads share it).
_LOCK = threading.Lock()


def require_vad():
    """Imports ``silero_vad``, or fails in one line saying how to get it.

    Raises
    ------
    UserError
        When the package is not installed.
    """
    try:
        import silero_vad
    except ImportError:
        raise UserError(
            "silero-vad is not installed; --segment vad (the default for "
            f"long recordings) needs it: {INSTALL_HINT}, or give --segment "
            "window"
        ) from None
    return silero_vad


def _model():
    global _MODEL
    if _MODEL is None:
        silero_vad = require_vad()
        with warnings.catch_warnings():
            # Deprecation notices of the package's own calls (torch.jit.load,
            # importlib.resources.path): nothing a user can act on.
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            _MODEL = silero_vad.load_silero_vad()
    return _MODEL


def detect_speech(wav, threshold=0.5):
    """(start, end) sample spans of speech in a 16 kHz waveform.

    Arguments
    ---------
    wav : torch.Tensor
        1-D 16 kHz waveform.
    threshold : float
        Speech probability above which a frame is speech.

    Returns
    -------
    list of tuple
        ``(start, end)`` in samples, in order.
    """
    silero_vad = require_vad()
    with _LOCK:
        found = silero_vad.get_speech_timestamps(
            wav.float(),
            _model(),
            threshold=threshold,
            sampling_rate=SAMPLE_RATE,
        )
    return [(int(span["start"]), int(span["end"])) for span in found]


def merge_gaps(spans, min_gap):
    """Merges spans separated by less than ``min_gap`` (same units).

    Example
    -------
    >>> merge_gaps([(0, 10), (12, 20), (40, 50)], min_gap=5)
    [(0, 20), (40, 50)]
    """
    merged = []
    for start, end in spans:
        if merged and start - merged[-1][1] < min_gap:
            merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def split_long(spans, max_length):
    """Splits each span longer than ``max_length`` into equal parts.

    Example
    -------
    >>> split_long([(0, 25), (30, 35)], max_length=10)
    [(0, 8), (8, 17), (17, 25), (30, 35)]
    """
    result = []
    for start, end in spans:
        parts = max(1, math.ceil((end - start) / max_length))
        edges = [start + round(i * (end - start) / parts) for i in range(parts)]
        result += list(zip(edges, edges[1:] + [end]))
    return result


def tile(spans, length):
    """Speech spans and the non-speech between them, covering ``[0, length]``.

    Returns
    -------
    list of tuple
        ``(start, end, is_speech)``, in order, without gaps.

    Example
    -------
    >>> tile([(2, 5), (5, 7), (9, 10)], 12)
    [(0, 2, False), (2, 5, True), (5, 7, True), (7, 9, False), \
(9, 10, True), (10, 12, False)]
    >>> tile([], 4)
    [(0, 4, False)]
    """
    pieces, position = [], 0
    for start, end in spans:
        if start > position:
            pieces.append((position, start, False))
        pieces.append((start, end, True))
        position = end
    if position < length:
        pieces.append((position, length, False))
    return pieces


def speech_segments(wav, min_gap=MIN_GAP, max_segment=MAX_SEGMENT):
    """A recording tiled into speech and non-speech spans, in seconds.

    Arguments
    ---------
    wav : torch.Tensor
        1-D 16 kHz waveform.
    min_gap : float
        Gaps shorter than this (seconds) are merged into the speech.
    max_segment : float
        Speech longer than this (seconds) is split into equal parts.

    Returns
    -------
    list of tuple
        ``(start, end, is_speech)`` in seconds, tiling the recording.
    """
    spans = detect_speech(wav)
    spans = merge_gaps(spans, min_gap * SAMPLE_RATE)
    spans = split_long(spans, max_segment * SAMPLE_RATE)
    return [
        (start / SAMPLE_RATE, end / SAMPLE_RATE, speech)
        for start, end, speech in tile(spans, len(wav))
    ]
