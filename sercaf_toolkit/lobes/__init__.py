"""Reusable building blocks, wired together per experiment in YAML."""

from sercaf_toolkit.lobes.adversary import SpeakerAdversary
from sercaf_toolkit.lobes.egemaps import (
    EGeMAPSDescriptors,
    EGeMAPSFunctionals,
    FunctionalsBranch,
)
from sercaf_toolkit.lobes.fusion import (
    ConcatFusion,
    CrossAttentionFusion,
    FiLMFusion,
    FusionBlock,
    PaperCAF,
    SumFusion,
)
from sercaf_toolkit.lobes.masking import (
    GlobalNormalization,
    MaskedPooling,
    UtteranceNormalization,
)
from sercaf_toolkit.lobes.model import (
    DimensionHead,
    DualStreamModel,
    EmotionHead,
    PassThrough,
)
from sercaf_toolkit.lobes.pooling import ProbePooling, StreamPooling
from sercaf_toolkit.lobes.scratch import DPCNN, TextRCNN
from sercaf_toolkit.lobes.spectrogram import LogMel, SpectrogramStream
from sercaf_toolkit.lobes.ssl import (
    LastLayer,
    LengthAwareGroupNorm,
    SSLStream,
    WeightedLayerSum,
)
from sercaf_toolkit.lobes.stream import Stream

__all__ = [
    "ConcatFusion",
    "CrossAttentionFusion",
    "DPCNN",
    "DualStreamModel",
    "EGeMAPSDescriptors",
    "EGeMAPSFunctionals",
    "FunctionalsBranch",
    "DimensionHead",
    "EmotionHead",
    "FiLMFusion",
    "FusionBlock",
    "GlobalNormalization",
    "LastLayer",
    "LengthAwareGroupNorm",
    "LogMel",
    "MaskedPooling",
    "PaperCAF",
    "PassThrough",
    "SSLStream",
    "SpeakerAdversary",
    "SpectrogramStream",
    "Stream",
    "ProbePooling",
    "StreamPooling",
    "SumFusion",
    "TextRCNN",
    "UtteranceNormalization",
    "WeightedLayerSum",
]
