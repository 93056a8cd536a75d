"""Shared fixtures: tiny SSL models built from configs, offline; an
exported demo model."""

import pathlib
import signal

import pytest
import speechbrain as sb
import torch

from sercaf_toolkit.deployment.export import export_model
from sercaf_toolkit.hparams import load_hparams
from sercaf_toolkit.tiny_ssl import build_tiny_ssl_model

DEMO_YAML = (
    pathlib.Path(__file__).resolve().parent.parent
    / "recipes" / "Demo" / "hparams" / "caf.yaml"
)  # fmt: skip
DEMO_LABELS = ["neutral", "happy", "angry", "sad"]


@pytest.fixture(autouse=True)
def torch_threads_given_back():
    """Some tests (and the commands they run in this process, through
    ``--threads``) set torch's thread count. Tests that compare a run in
    this process with one in a subprocess to the bit need both to sum in
    the same order, so every test gives the count back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def interrupt_handler_given_back():
    """A test that leaves SIGINT ignored makes every later child process
    ignore Ctrl-C too (ignored signals are inherited), so the interrupt
    tests would pass alone and fail in the suite."""
    handler = signal.getsignal(signal.SIGINT)
    yield
    if handler is not None and signal.getsignal(signal.SIGINT) is not handler:
        signal.signal(signal.SIGINT, handler)


@pytest.fixture(scope="session")
def tiny_ssl_source(tmp_path_factory):
    """``source(model_type, feat_extract_norm)``: a saved model folder."""
    root = tmp_path_factory.mktemp("tiny_ssl")

    def source(model_type="wav2vec2", feat_extract_norm="group"):
        folder = root / f"{model_type}-{feat_extract_norm}"
        return build_tiny_ssl_model(
            str(folder), model_type, feat_extract_norm=feat_extract_norm
        )

    return source


@pytest.fixture(scope="session")
def demo_model_dir(tmp_path_factory):
    """An exported (untrained) demo model: enough to test inference."""
    root = tmp_path_factory.mktemp("model")
    argv = [
        str(DEMO_YAML),
        f"--data_folder={root}",
        f"--output_folder={root}/run",
    ]
    _, _, overrides = sb.parse_arguments(argv)
    hparams = load_hparams(DEMO_YAML, overrides)
    model = hparams["model"]
    model.train()
    model(torch.randn(2, 16000))  # normalisation statistics
    encoder = hparams["label_encoder"]
    encoder.update_from_iterable(DEMO_LABELS)
    encoder.expect_len(4)
    return export_model(
        str(DEMO_YAML),
        overrides,
        model.eval(),
        encoder,
        str(root / "inference"),
    )


@pytest.fixture(scope="session")
def speaker_normalized_run(tmp_path_factory):
    """A demo model trained for 2 epochs with ``speaker_normalization:
    True`` (its run folder: predictions.csv, inference/), shared by the
    tests of speaker-normalised inference and the service."""
    from sercaf_toolkit.training.recipe import run_recipe
    from tests.demo_runs import demo_args

    root = tmp_path_factory.mktemp("speaker_normalized")
    return run_recipe(
        demo_args(
            root / "data",
            root / "run",
            "--number_of_epochs=2",
            "--speaker_normalization=True",
            f"--normalized_audio_folder={root / 'normalized'}",
        )
    )
