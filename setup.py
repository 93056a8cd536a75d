"""Installs sercaf-toolkit: ``pip install -e .`` (``.[test]`` for the tests,
``.[onnx]`` for ONNX export and onnxruntime inference, ``.[vad]`` for
speech segmentation, ``.[serve]`` for ``sercaf serve``, ``.[egemaps]``
for the eGeMAPS stream, ``.[baselines]`` for the eGeMAPS baseline of
benchmarks/learning.py)."""

import re

from setuptools import find_packages, setup

# The version is written once, in sercaf_toolkit/__init__.py (what
# `sercaf --version` prints); read as text, since importing the package
# needs its dependencies installed.
with open("sercaf_toolkit/__init__.py", encoding="utf-8") as init:
    VERSION = re.search(
        r'^__version__ = "([^"]+)"', init.read(), re.MULTILINE
    ).group(1)

# Private (underscore) or undocumented APIs the toolkit relies on. A release
# may change them without notice, hence the upper bounds on speechbrain and
# transformers below; tests/test_private_apis.py fails, naming the API and
# its user, when one goes. Check them before raising a bound.
#
# SpeechBrain (speechbrain.core.Brain, speechbrain.utils.checkpoints):
# - Brain._train_loader_specifics(dataset, loader_kwargs), overridden by
#   SERBrain (sercaf_toolkit/training/brain.py) to register a dynamic batch
#   sampler as Brain.train_sampler, whose set_epoch(epoch) Brain calls each
#   epoch;
# - Checkpointer._new_checkpoint_dirpath() and
#   Checkpointer._custom_checkpoint_dirpath(name), overridden by
#   AtomicCheckpointer (sercaf_toolkit/training/checkpoints.py) so that
#   save_checkpoint writes into a hidden .partial- folder, renamed when
#   complete (list_checkpoints ignores folders without the CKPT prefix).
#
# transformers (Wav2Vec2Model, HubertModel, WavLMModel), all in
# sercaf_toolkit/lobes/ssl.py (SSLStream):
# - model._get_feat_extract_output_lengths(lengths): valid frames per
#   utterance after the CNN feature extractor;
# - model.feature_extractor._freeze_parameters(): freezes the CNN and stops
#   it from asking its input for gradients;
# - the module layout model.feature_extractor.conv_layers[0].conv and
#   .layer_norm (a GroupNorm with one group per channel in the base models),
#   which LengthAwareGroupNorm replaces.
#
# ruamel.yaml (round-trip nodes), in sercaf_toolkit/hparams.py and export.py:
# - node.ca.items and node.ca.comment (comments), node.fa.set_block_style()
#   (flow style) and node.tag.value (a tagged node's tag).

setup(
    name="sercaf-toolkit",
    version=VERSION,
    description=(
        "Dual-stream speech emotion recognition with cross-attention "
        "fusion, on SpeechBrain"
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["sercaf_toolkit", "sercaf_toolkit.*"]),
    # the web page of sercaf serve
    package_data={"sercaf_toolkit.deployment": ["serve_page.html"]},
    python_requires=">=3.10",
    install_requires=[
        # torchaudio's build must match torch's: this pair imports and runs
        # together (torch 2.13 CPU with torchaudio 2.11 does not import).
        "torch>=2.14,<2.15",
        "torchaudio>=2.11,<2.12",
        "speechbrain>=1.1,<1.2",
        # <6: private APIs (listed above) may change in a major release.
        "transformers>=4.40,<6",
        "hyperpyyaml>=1.2",
        "sentencepiece",
        "soundfile",
        "scikit-learn",
        "scipy",
        "numpy",
        "matplotlib",
        "ruamel.yaml>=0.18,<0.19",  # node attributes: see the list above
    ],
    entry_points={"console_scripts": ["sercaf=sercaf_toolkit.cli:main"]},
    extras_require={
        # opensmile: the eGeMAPS stream's tests run in CI too; onnx and
        # onnxruntime: tests/test_onnx.py (the ONNX export and runtime)
        "test": [
            "pytest>=8",
            # two test processes (one per core; pyproject.toml's addopts):
            # tiny-model training is interpreter-bound, and each test file
            # stays in one process, in order (the docs tests' examples
            # build on each other)
            "pytest-xdist>=3.6",  # 3.6: --no-loadscope-reorder
            "ruff",
            "opensmile",
            "onnx>=1.16",
            "onnxruntime>=1.18",
            # speech segmentation and the service (tests/test_segmentation.py,
            # tests/test_serve.py): the vad and serve extras, and an HTTP
            # client
            "silero-vad>=5",
            "fastapi>=0.110",
            "uvicorn>=0.29",
            "python-multipart>=0.0.13",
            "httpx>=0.27",
            # tests/test_serve_page.py drives Chromium when one is
            # installed (chromium and chromium-driver), else it skips
            "selenium>=4.10",
        ],
        # speech segmentation of long recordings (sercaf predict --segment
        # vad, the default): Silero VAD, whose wheel ships its model
        "vad": ["silero-vad>=5"],
        # sercaf serve: an ASGI service (FastAPI on uvicorn)
        "serve": [
            "fastapi>=0.110",
            "uvicorn>=0.29",
            "python-multipart>=0.0.13",
            "silero-vad>=5",
        ],
        # the eGeMAPS stream (streams: triple / logmel_egemaps)
        "egemaps": ["opensmile"],
        # sercaf export-onnx, and .onnx models in sercaf predict
        "onnx": ["onnx>=1.16", "onnxruntime>=1.18"],
        # benchmarks/learning.py's eGeMAPS baseline (openSMILE functionals)
        "baselines": ["opensmile"],
    },
)
