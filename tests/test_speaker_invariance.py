"""Speaker-invariant training (issue 24): mixup and checkpoint averaging.

Mixup: the plan's soft targets and mixed loss, ``lam = 1`` changing
nothing, the union mask and zero padding of mixed features, mixed
waveforms, ``mixup_alpha: 0`` drawing nothing and training as before, and a
short mixup training that still learns the demo task. Averaging: the mean
of identical and of different checkpoints, and a recipe run that tests,
records and exports the average (of the best epochs, and of the last ones
when there is no validation). And the one-line refusals of wrong values.
"""

import contextlib
import json
import pathlib
from functools import partial

import pytest
import speechbrain as sb
import torch

from sercaf_toolkit.errors import UserError
from sercaf_toolkit.hparams import load_hparams
from sercaf_toolkit.lobes import (
    DPCNN,
    GlobalNormalization,
    LogMel,
    SpectrogramStream,
)
from sercaf_toolkit.lobes.mixup import MixPlan, mixed_input
from sercaf_toolkit.training.brain import SERBrain
from sercaf_toolkit.training.checkpoints import (
    AtomicCheckpointer,
    averaged_state_dict,
)
from sercaf_toolkit.training.preflight import check_training_options
from sercaf_toolkit.training.recipe import run_recipe
from tests.demo_runs import demo_args

LOGMEL = ("--streams=logmel", "--fusion=pool")


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory):
    """One demo corpus folder for this module's runs (made on first use)."""
    return tmp_path_factory.mktemp("demo_data")


def logmel_run(data, output, *extra):
    """A short log-mel demo run (3 utterances per emotion)."""
    return run_recipe(demo_args(data, output, *LOGMEL, *extra))


class Capture(torch.nn.Module):
    """An encoder that keeps what it is given."""

    def __init__(self, input_size):
        super().__init__()
        self.output_size = input_size

    def forward(self, features, mask):
        self.seen = features.clone(), mask.clone()
        return features, mask


def logmel_stream(encoder=None):
    torch.manual_seed(0)
    stream = SpectrogramStream(
        LogMel(n_mels=16),
        encoder or partial(DPCNN, num_filters=8, num_blocks=1),
        GlobalNormalization(16),
    )
    stream.train()
    stream(0.1 * torch.randn(3, 8000))  # normalisation statistics
    return stream.eval()


def batch():
    torch.manual_seed(1)
    return 0.1 * torch.randn(3, 8000), torch.tensor([1.0, 0.5, 0.75])


# Mixup -----------------------------------------------------------------


def test_soft_targets_sum_to_one_and_give_the_mixed_loss():
    targets = torch.tensor([0, 1, 3, 3, 2])
    plan = MixPlan(0.3, torch.tensor([4, 3, 0, 1, 2]))
    soft = plan.mix_targets(targets, 4)
    torch.testing.assert_close(soft.sum(dim=1), torch.ones(5))
    assert soft[0].tolist() == pytest.approx([0.3, 0, 0.7, 0])
    assert soft[2].tolist() == pytest.approx([0.7, 0, 0, 0.3])
    log_probs = torch.log_softmax(torch.randn(5, 4), dim=-1)
    # Without class weights: the cross-entropy of the soft targets.
    brain = type("Brain", (), {"class_weights": None, "mix_plan": plan})()
    loss = SERBrain._class_loss(brain, log_probs, targets, sb.Stage.TRAIN)
    expected = -(soft * log_probs).sum(dim=1).mean()
    torch.testing.assert_close(loss, expected)
    # With them: each of the two NLLs is weighted (and normalised).
    brain.class_weights = torch.tensor([1.0, 2.0, 0.5, 1.5])
    loss = SERBrain._class_loss(brain, log_probs, targets, sb.Stage.TRAIN)
    nll = partial(
        torch.nn.functional.nll_loss, log_probs, weight=brain.class_weights
    )
    torch.testing.assert_close(
        loss, 0.3 * nll(targets) + 0.7 * nll(targets[plan.perm])
    )
    # Validation and test never mix.
    plain = SERBrain._class_loss(brain, log_probs, targets, sb.Stage.VALID)
    assert torch.equal(plain, nll(targets))


def test_lam_one_gives_exactly_the_unmixed_features_and_loss():
    plan = MixPlan(1.0, torch.tensor([2, 0, 1]))
    stream = logmel_stream(Capture)
    wavs, lens = batch()
    frames, mask = stream(wavs, lens)
    with stream.mixed(plan):
        mixed, mixed_mask = stream(wavs, lens)
    assert torch.equal(mixed, frames) and torch.equal(mixed_mask, mask)
    log_probs = torch.log_softmax(torch.randn(3, 4), dim=-1)
    targets = torch.tensor([0, 2, 3])
    brain = type("Brain", (), {"class_weights": None, "mix_plan": plan})()
    loss = SERBrain._class_loss(brain, log_probs, targets, sb.Stage.TRAIN)
    assert torch.equal(loss, torch.nn.functional.nll_loss(log_probs, targets))


def test_lam_one_leaves_the_whole_demo_model_unchanged(tmp_path):
    """Every stream (SSL: mixed waveforms; log-mel: mixed features)."""
    argv = demo_args(tmp_path / "data", tmp_path / "run")
    hparams_file, _, overrides = sb.parse_arguments(argv)
    model = load_hparams(hparams_file, overrides)["model"]
    model.train()
    wavs, lens = batch()
    model(wavs, lens)  # normalisation statistics
    model.eval()
    before = model.log_probabilities(wavs, lens)
    plan = MixPlan(1.0, torch.tensor([1, 2, 0]))
    with contextlib.ExitStack() as held:
        for stream in model.streams:
            held.enter_context(stream.mixed(plan))
        after = model.log_probabilities(wavs, lens)
    assert torch.equal(after, before)
    plan = MixPlan(0.5, torch.tensor([1, 2, 0]))
    with contextlib.ExitStack() as held:
        for stream in model.streams:
            held.enter_context(stream.mixed(plan))
        mixed = model.log_probabilities(wavs, lens)
    assert not torch.allclose(mixed, before)
    assert all(stream.mix_plan is None for stream in model.streams)


def test_mixed_features_mask_is_the_union_and_padding_stays_zero():
    stream = logmel_stream(Capture)
    wavs, lens = batch()
    stream(wavs, lens)
    features, mask = stream.encoder.seen
    plan = MixPlan(0.6, torch.tensor([1, 2, 0]))
    with stream.mixed(plan):
        stream(wavs, lens)
    mixed, union = stream.encoder.seen
    assert torch.equal(union, mask | mask[[1, 2, 0]])
    full, three_quarters = mask.shape[1], int(mask[2].sum())
    assert union.sum(dim=1).tolist() == [full, three_quarters, full]
    torch.testing.assert_close(
        mixed, 0.6 * features + 0.4 * features[[1, 2, 0]]
    )
    assert not mixed[~union].any()  # frames valid in neither: zero
    # Row 1 (half length) mixed with row 2 (3/4): valid to row 2's end,
    # its own frames beyond its end are the partner's, scaled.
    own = int(mask[1].sum())
    assert mixed[1, own:][union[1, own:]].abs().sum() > 0


def test_mixed_waveforms_are_as_long_as_the_longer():
    plan = MixPlan(0.25, torch.tensor([1, 0, 2]))
    wavs = torch.ones(3, 8)
    mixed, lens = plan.mix_waveforms(wavs, torch.tensor([0.5, 0.25, 0.75]))
    assert lens.tolist() == [0.5, 0.5, 0.75]
    assert mixed[0].tolist() == [1, 1, 0.25, 0.25, 0, 0, 0, 0]
    assert mixed[1].tolist() == [1, 1, 0.75, 0.75, 0, 0, 0, 0]
    assert mixed[2].tolist() == [1] * 6 + [0, 0]
    # A module that is not a Stream gets them through a forward hook.
    seen = {}

    def keep(wavs, wav_lens=None):
        seen["lens"] = wav_lens

    module = torch.nn.Module()
    module.forward = keep
    with mixed_input(module, plan):
        module(wavs, torch.tensor([0.5, 0.25, 0.75]))
    assert seen["lens"].tolist() == [0.5, 0.5, 0.75]


def test_the_ssl_cache_never_serves_a_mixed_batch(tiny_ssl_source):
    from sercaf_toolkit.lobes.ssl import SSLStream

    stream = SSLStream(tiny_ssl_source(), freeze=True)
    stream.feature_cache = type("Cache", (), {"enabled": True})()
    with stream.sources(["a.wav", "b.wav"]):
        assert stream._cache_serves(2)
        with stream.mixed(MixPlan(0.5, torch.tensor([1, 0]))):
            assert not stream._cache_serves(2)


def test_alpha_zero_draws_nothing_and_hands_no_plan():
    stream = logmel_stream()
    model = type("Model", (), {"streams": [stream]})()
    brain = type("Brain", (), {})()
    brain.mixup_alpha = 0.0
    brain.device = "cpu"
    brain._model = lambda: model
    state = torch.get_rng_state()
    for stage in (sb.Stage.TRAIN, sb.Stage.VALID):
        with SERBrain._mixup(brain, stage, 3):
            assert stream.mix_plan is None and brain.mix_plan is None
    assert torch.equal(torch.get_rng_state(), state)
    brain.mixup_alpha = 0.4
    with SERBrain._mixup(brain, sb.Stage.TRAIN, 3):
        assert stream.mix_plan is brain.mix_plan is not None
    assert stream.mix_plan is None  # handed back after the batch
    assert not torch.equal(torch.get_rng_state(), state)
    with SERBrain._mixup(brain, sb.Stage.VALID, 3):
        assert stream.mix_plan is None and brain.mix_plan is None


def test_alpha_zero_trains_exactly_as_without_mixup(
    demo_data, tmp_path, monkeypatch
):
    args = ("--number_of_epochs=1",)
    first = logmel_run(demo_data, tmp_path / "zero", "--mixup_alpha=0", *args)

    @contextlib.contextmanager
    def no_mixup(self, stage, batch_size):  # the code before mixup
        yield

    monkeypatch.setattr(SERBrain, "_mixup", no_mixup)
    second = logmel_run(demo_data, tmp_path / "none", *args)
    for name in ("predictions.csv", "test_metrics.json"):
        assert (
            pathlib.Path(first.output_folder, name).read_bytes()
            == pathlib.Path(second.output_folder, name).read_bytes()
        ), name
    weights = "embedding_model.ckpt"
    one = torch.load(pathlib.Path(first.inference_folder) / weights)
    two = torch.load(pathlib.Path(second.inference_folder) / weights)
    assert all(torch.equal(one[k], two[k]) for k in one)


def test_a_short_mixup_training_learns_the_demo_task(demo_data, tmp_path):
    result = logmel_run(demo_data, tmp_path / "run", "--mixup_alpha=0.4")
    chance = 0.25
    assert result.metrics["UA"] > chance + 0.15, result.metrics["UA"]
    history = json.loads(
        pathlib.Path(result.output_folder, "history.json").read_text()
    )
    losses = [history[e]["train"]["loss"] for e in sorted(history, key=int)]
    assert losses[-1] < losses[0]


# Checkpoint averaging ----------------------------------------------------


def test_averaging_identical_checkpoints_gives_the_same_weights(tmp_path):
    stream = logmel_stream()
    checkpointer = AtomicCheckpointer(tmp_path, {"model": stream})
    for epoch in (1, 2, 3):
        checkpointer.save_checkpoint(meta={"epoch": epoch})
    state = averaged_state_dict(checkpointer.find_checkpoints(), "model")
    for name, value in stream.state_dict().items():
        assert torch.equal(state[name], value), name
        assert state[name].dtype == value.dtype


def test_averaging_two_checkpoints_gives_the_elementwise_mean(tmp_path):
    stream = logmel_stream()
    checkpointer = AtomicCheckpointer(tmp_path, {"model": stream})
    checkpointer.save_checkpoint(meta={"epoch": 4})
    first = {k: v.clone() for k, v in stream.state_dict().items()}
    with torch.no_grad():
        for parameter in stream.parameters():
            parameter.add_(torch.randn_like(parameter))
        stream.normalization.running_mean.add_(1.0)
        stream.normalization.updates.add_(7)  # an integer buffer
    checkpointer.save_checkpoint(meta={"epoch": 5})
    second = stream.state_dict()
    state = averaged_state_dict(checkpointer.find_checkpoints(), "model")
    for name, value in second.items():
        if torch.is_floating_point(value):
            expected = ((first[name].double() + value.double()) / 2).float()
            assert torch.equal(state[name], expected), name
        else:  # counters: the newest checkpoint's
            assert torch.equal(state[name], value), name
    changed = [name for name, _ in stream.named_parameters()]
    changed.append("normalization.running_mean")
    assert all(not torch.equal(state[k], second[k]) for k in changed)
    assert int(state["normalization.updates"]) == int(first[
        "normalization.updates"]) + 7  # fmt: skip


def kept_checkpoints(output_folder):
    checkpointer = AtomicCheckpointer(pathlib.Path(output_folder) / "save")
    return {
        c.meta["epoch"]: c
        for c in checkpointer.list_checkpoints()
        if "epoch" in c.meta
    }


def test_an_averaged_run_tests_records_and_exports_the_average(
    demo_data, tmp_path, capsys
):
    from speechbrain.inference.classifiers import EncoderClassifier

    result = logmel_run(demo_data, tmp_path / "run", "--average_checkpoints=2")
    out = capsys.readouterr().out
    metrics = result.metrics
    epochs = metrics["averaged_epochs"]
    history = json.loads(
        pathlib.Path(result.output_folder, "history.json").read_text()
    )
    ua = {int(e): history[e]["valid"]["UA"] for e in history}
    # The two best by valid UA (whichever of a tie).
    assert len(epochs) == 2 and min(ua[e] for e in epochs) >= max(
        ua[e] for e in ua if e not in epochs
    )
    block = metrics["averaged_checkpoints"]
    assert block["asked"] == 2 and block["average_from"] == "best"
    assert metrics["selected_on"] == "the 2 best by valid UA"
    assert metrics["selected_epoch"] == epochs[-1]
    listed = ", ".join(str(e) for e in epochs)
    assert f"(average of epochs {listed}; the 2 best by valid UA)" in out
    log = pathlib.Path(result.output_folder, "train_log.txt").read_text()
    assert f"epochs averaged: {listed}" in log
    # The exported model holds the average of those checkpoints.
    kept = kept_checkpoints(result.output_folder)
    average = averaged_state_dict([kept[e] for e in epochs], "model")
    exported = torch.load(
        pathlib.Path(result.inference_folder) / "embedding_model.ckpt"
    )
    assert exported.keys() == average.keys()
    assert all(torch.equal(exported[k], average[k]) for k in average)
    assert not all(
        torch.equal(exported[k], v)
        for k, v in torch.load(kept[epochs[-1]].paramfiles["model"]).items()
    )
    classifier = EncoderClassifier.from_hparams(
        source=result.inference_folder, savedir=str(tmp_path / "loaded")
    )
    loaded = classifier.mods.embedding_model.state_dict()
    assert all(torch.equal(loaded[k], average[k]) for k in average)


def test_without_validation_the_last_epochs_are_averaged(demo_data, tmp_path):
    """``average_from: best`` has nothing to rank: the last epochs, and a
    short run averages the epochs it has."""
    result = logmel_run(
        demo_data,
        tmp_path / "run",
        "--validation=none",
        "--number_of_epochs=2",
        "--average_checkpoints=3",
    )
    metrics = result.metrics
    assert metrics["averaged_epochs"] == [1, 2]
    assert metrics["selected_on"] == (
        "the last 2 epochs (no validation to rank by: the last epochs; "
        "only 2 of the 3 asked for exist)"
    )


# Mistakes -----------------------------------------------------------------


@pytest.mark.parametrize(
    "option, named",
    [
        ("--mixup_alpha=-0.5", "--mixup_alpha=-0.5"),
        ("--mixup_alpha=abc", "--mixup_alpha=abc"),
        ("--average_checkpoints=0", "--average_checkpoints=0"),
        ("--average_checkpoints=2.5", "--average_checkpoints=2.5"),
        ("--average_from=first", "--average_from=first"),
    ],
)
def test_a_wrong_value_is_one_line_before_anything_is_written(
    tmp_path, option, named
):
    output = tmp_path / "run"
    with pytest.raises(UserError) as refused:
        run_recipe(demo_args(tmp_path / "data", output, *LOGMEL, option))
    message = str(refused.value)
    assert message.startswith(named) and "\n" not in message
    assert not output.exists() and not (tmp_path / "data").exists()


@pytest.mark.parametrize("task", ["dimensional", "joint"])
def test_mixup_with_dimensions_is_refused(tmp_path, task):
    with pytest.raises(UserError, match=f"task: {task} trains on dimension"):
        run_recipe(
            demo_args(
                tmp_path / "data",
                tmp_path / "run",
                *LOGMEL,
                f"--task={task}",
                "--mixup_alpha=0.4",
            )
        )
    assert not (tmp_path / "run").exists()


def test_the_options_are_checked_for_python_users_too():
    check_training_options({})  # the defaults
    with pytest.raises(UserError, match="average_from=worst"):
        check_training_options({"average_from": "worst"})
