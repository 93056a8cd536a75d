"""Installs sercaf-toolkit: ``pip install -e .`` (``.[test]`` for the tests,
``.[baselines]`` for the eGeMAPS baseline of benchmarks/learning.py)."""

from setuptools import find_packages, setup

setup(
    name="sercaf-toolkit",
    version="0.1.0",
    description=(
        "Dual-stream speech emotion recognition with cross-attention "
        "fusion, on SpeechBrain"
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["sercaf_toolkit", "sercaf_toolkit.*"]),
    python_requires=">=3.10",
    install_requires=[
        # torchaudio's build must match torch's: this pair imports and runs
        # together (torch 2.13 CPU with torchaudio 2.11 does not import).
        "torch>=2.14,<2.15",
        "torchaudio>=2.11,<2.12",
        "speechbrain>=1.1,<1.2",
        "transformers>=4.40",
        "hyperpyyaml>=1.2",
        "sentencepiece",
        "soundfile",
        "scikit-learn",
        "scipy",
        "numpy",
        "matplotlib",
        "ruamel.yaml",
    ],
    entry_points={"console_scripts": ["sercaf=sercaf_toolkit.cli:main"]},
    extras_require={
        "test": ["pytest>=8", "ruff"],
        # benchmarks/learning.py's eGeMAPS baseline (openSMILE functionals)
        "baselines": ["opensmile"],
    },
)
