"""Speaker-invariant training: the gradient-reversal speaker adversary and
the eGeMAPS functionals branch (sercaf_toolkit.lobes.adversary, .egemaps)."""

import json
import os
from functools import partial

import pytest
import torch

from sercaf_toolkit.data import read_manifest
from sercaf_toolkit.errors import UserError
from sercaf_toolkit.lobes import (
    DPCNN,
    DualStreamModel,
    EmotionHead,
    FunctionalsBranch,
    LogMel,
    SpectrogramStream,
    StreamPooling,
)
from sercaf_toolkit.lobes.adversary import (
    SpeakerAdversary,
    reverse_gradient,
    scheduled_weight,
)
from tests.demo_runs import demo_args


def test_reversal_flips_and_scales_gradients_numerically():
    torch.manual_seed(0)
    x = torch.randn(4, 3, dtype=torch.double, requires_grad=True)
    weights = torch.randn(4, 3, dtype=torch.double)
    for scale in (0.0, 0.3, 2.0):
        (grad,) = torch.autograd.grad(
            (weights * reverse_gradient(x, scale)).sum(), x
        )
        assert torch.allclose(grad, -scale * weights)
    # Forward: the identity. Numerically, the reversed gradient is minus
    # scale times the finite-difference gradient of the function.
    assert torch.equal(reverse_gradient(x, 0.5), x)

    def f(v):
        return (v.sin() * weights).sum()

    step, numeric = 1e-6, torch.zeros_like(x)
    for i in range(x.numel()):
        bump = torch.zeros(x.numel(), dtype=torch.double)
        bump[i] = step
        bump = bump.view_as(x)
        numeric.view(-1)[i] = (f(x + bump) - f(x - bump)) / (2 * step)
    (grad,) = torch.autograd.grad(f(reverse_gradient(x, 0.7)), x)
    assert torch.allclose(grad, -0.7 * numeric, atol=1e-6)


def test_dann_schedule_ramps_from_zero_to_the_weight():
    values = [scheduled_weight(0.4, p / 10) for p in range(11)]
    assert values[0] == 0.0 and values == sorted(values)
    assert 0.399 < values[-1] <= 0.4
    assert scheduled_weight(0.4, 0.3, "constant") == 0.4
    with pytest.raises(ValueError, match="schedule"):
        SpeakerAdversary(8, 3, schedule="sometimes")


def test_adversary_trains_itself_and_pushes_the_embedding_away():
    """Its classifiers descend the speaker loss; the embedding ascends it."""
    torch.manual_seed(0)
    adversary = SpeakerAdversary(
        6, 3, stream_sizes=[4], weight=2.0, on_streams=True, dropout=0.0
    )
    adversary.set_progress(1.0)
    embedding = torch.randn(5, 6, requires_grad=True)
    stream = torch.randn(5, 4, requires_grad=True)
    speakers = torch.tensor([0, 1, 2, 0, 1])
    loss = adversary.loss(embedding, [stream], speakers)
    loss.backward()
    # Without reversal, the same loss's gradient on the inputs.
    plain = SpeakerAdversary(
        6, 3, stream_sizes=[4], weight=1.0, on_streams=True, dropout=0.0
    )
    plain.load_state_dict(adversary.state_dict())
    plain.scale = -1.0  # reversal by -1: the plain gradient
    inputs = embedding.detach().requires_grad_(), stream.detach()
    inputs[1].requires_grad_()
    plain.loss(inputs[0], [inputs[1]], speakers).backward()
    assert len(adversary.classifiers) == 2  # the fused one and the stream's
    scale = adversary.scale
    assert abs(scale - 2.0) < 1e-3
    assert torch.allclose(embedding.grad, -scale * inputs[0].grad, atol=1e-6)
    assert torch.allclose(stream.grad, -scale * inputs[1].grad, atol=1e-6)
    # The classifiers themselves get the plain (descending) gradient.
    assert all(p.grad is not None for p in adversary.parameters())


@pytest.fixture(scope="module")
def adversarial_run(tmp_path_factory):
    """Two demo epochs of the log-mel stream with the speaker adversary on
    (on the stream too)."""
    from sercaf_toolkit.training.recipe import run_recipe

    root = tmp_path_factory.mktemp("reversal")
    seen = []
    real_loss = SpeakerAdversary.loss

    def spy(self, embedding, streams, speakers):
        seen.append(speakers.tolist())
        return real_loss(self, embedding, streams, speakers)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SpeakerAdversary, "loss", spy)
        result = run_recipe(
            demo_args(
                root / "data",
                root / "run",
                "--number_of_epochs=2",
                "--streams=logmel",
                "--fusion=pool",
                "--adversary_weight=0.5",
                "--adversary_on_streams=True",
            )
        )
    return result, seen


def test_adversary_sees_only_training_speakers(adversarial_run):
    result, seen = adversarial_run
    folder = result.output_folder
    train = read_manifest(os.path.join(folder, "train.csv"))
    speakers = sorted({row["speaker"] for row in train})
    others = {
        row["speaker"]
        for split in ("valid", "test")
        for row in read_manifest(os.path.join(folder, f"{split}.csv"))
    }
    assert others and not others & set(speakers)
    # Called on training batches only (not validation or test), whose
    # targets cover the training speakers' indices and nothing else.
    targets = [index for batch in seen for index in batch]
    assert len(targets) == 2 * len(train)  # two epochs, every utterance
    assert set(targets) == set(range(len(speakers)))
    saved = [
        name
        for name in os.listdir(os.path.join(folder, "save"))
        if name.startswith("CKPT")
    ]
    ckpt = os.path.join(folder, "save", saved[0])
    adversary = torch.load(
        os.path.join(ckpt, "speaker_adversary.ckpt"), weights_only=True
    )
    # One classifier per input (fused embedding, the stream), each
    # telling apart exactly the training speakers.
    outputs = [v.shape[0] for k, v in adversary.items() if k.endswith("3.bias")]
    assert outputs == [len(speakers)] * 2
    history = json.load(open(os.path.join(folder, "history.json")))
    assert all("speaker_loss" in epoch["train"] for epoch in history.values())


def test_adversary_is_absent_from_the_model_and_its_export(adversarial_run):
    from speechbrain.inference.classifiers import EncoderClassifier

    result, _ = adversarial_run
    exported = torch.load(
        os.path.join(result.inference_folder, "embedding_model.ckpt"),
        weights_only=True,
    )
    assert not any("advers" in key or "speaker" in key for key in exported)
    hyperparams = open(
        os.path.join(result.inference_folder, "hyperparams.yaml")
    ).read()
    assert "SpeakerAdversary" not in hyperparams
    classifier = EncoderClassifier.from_hparams(
        source=result.inference_folder, savedir=result.inference_folder
    )
    wav = torch.randn(1, 16000)
    assert classifier.classify_batch(wav)[0].shape == (1, 4)


def test_one_training_speaker_is_one_line(tmp_path):
    from sercaf_toolkit.training.recipe import speaker_adversary

    train = tmp_path / "train.csv"
    train.write_text("ID,duration,wav,label,speaker\na,1.0,a.wav,sad,s1\n")
    hparams = {"adversary_weight": 0.3, "train_csv": str(train)}
    with pytest.raises(UserError, match="at least 2 training speakers"):
        speaker_adversary(hparams)
    assert speaker_adversary({"adversary_weight": 0.0}) is None


# The functionals branch -----------------------------------------------------


class _Level(torch.nn.Module):
    """A stand-in for openSMILE: per-utterance peak and mean level."""

    output_size = 2

    def forward(self, wavs, wav_lens=None):
        from sercaf_toolkit.lobes.masking import mask_waveforms

        masked, lengths, _ = mask_waveforms(wavs, wav_lens)
        peak = masked.abs().amax(dim=1)
        mean = masked.abs().sum(dim=1) / lengths
        return torch.stack([peak, mean], dim=1)


def _model(functionals=None):
    torch.manual_seed(0)
    return DualStreamModel(
        streams=[SpectrogramStream(LogMel(n_mels=16), DPCNN(16, 8, 1))],
        fusion=partial(StreamPooling, output_size=6),
        classifier=partial(EmotionHead, n_classes=3),
        functionals=functionals,
    )


def test_functionals_are_appended_and_standardised_on_training_data():
    model = _model(partial(FunctionalsBranch, _Level))
    assert model.output_size == 6 + 2
    assert model.classifier.linear.in_features == 8
    wavs = torch.randn(4, 8000) * torch.tensor([[0.1], [0.5], [1.0], [2.0]])
    model.train()
    model(wavs)  # statistics of these "training" utterances
    model.eval()
    encoding = model.encode(wavs)
    appended = encoding.embedding[:, 6:]
    assert torch.allclose(appended.mean(0), torch.zeros(2), atol=1e-5)
    assert torch.allclose(appended.std(0, unbiased=False), torch.ones(2))
    assert torch.equal(encoding.embedding[:, :6], encoding.fused)
    # Evaluation keeps the training statistics: a new utterance is
    # standardised with them, not its own.
    loud = model.encode(10 * wavs[3:]).embedding[0, 6:]
    assert (loud > 3).all()
    # The head is linear in them: its logits add a linear classifier of
    # the functionals to the fused embedding's.
    logits = model.classifier.linear(encoding.embedding)
    weight = model.classifier.linear.weight
    split = encoding.fused @ weight[:, :6].T + appended @ weight[:, 6:].T
    assert torch.allclose(logits, split + model.classifier.linear.bias)


def test_functionals_do_not_change_the_model_without_them():
    """No random draws: the other blocks start from the same weights."""
    plain = _model().state_dict()
    with_branch = _model(partial(FunctionalsBranch, _Level)).state_dict()
    for key, value in plain.items():
        if key.startswith("classifier"):
            continue  # wider with the branch
        assert torch.equal(with_branch[key], value), key
    assert "functionals" not in str(list(plain))


def test_egemaps_functionals_are_padding_invariant():
    pytest.importorskip("opensmile")
    branch = FunctionalsBranch()
    torch.manual_seed(1)
    wavs = 0.1 * torch.randn(2, 16000)
    branch.train()
    branch(wavs)
    branch.eval()
    batch = branch(wavs, torch.tensor([1.0, 0.6]))
    alone = branch(wavs[1:, :9600])
    assert batch.shape == (2, 88)
    assert torch.allclose(batch[1], alone[0])
    assert torch.isfinite(batch).all()


def test_functionals_model_refuses_onnx_in_one_line(tmp_path):
    pytest.importorskip("onnx")
    from sercaf_toolkit.deployment.onnx_export import export_module

    model = _model(FunctionalsBranch())
    with pytest.raises(UserError, match="EGeMAPSFunctionals block") as error:
        export_module(model, ["a", "b", "c"], str(tmp_path / "m.onnx"))
    assert "\n" not in str(error.value)


def test_mixup_mixes_the_functionals_with_the_streams_plan():
    from sercaf_toolkit.lobes.mixup import MixPlan

    branch = FunctionalsBranch(_Level)
    wavs = torch.randn(3, 800) * torch.tensor([[0.1], [1.0], [3.0]])
    branch.train()
    branch(wavs)
    branch.eval()
    plain = branch(wavs)
    plan = MixPlan(0.7, torch.tensor([2, 0, 1]))
    with branch.mixed(plan):
        mixed = branch(wavs)
    assert torch.allclose(mixed, 0.7 * plain + 0.3 * plain[[2, 0, 1]])
    assert torch.equal(branch(wavs), plain)  # the plan is gone after


@pytest.mark.parametrize(
    "option, words",
    [
        ("--adversary_weight=-1", "--adversary_weight=-1: give"),
        ("--adversary_schedule=sometimes", "use dann"),
        ("--adversary_hidden=0", "--adversary_hidden=0: give"),
        ("--functionals=egemap", "did you mean egemaps?"),
    ],
)
def test_wrong_settings_are_one_line_before_anything_is_written(
    tmp_path, option, words
):
    from sercaf_toolkit.training.recipe import run_recipe

    output = tmp_path / "run"
    with pytest.raises(UserError, match=words) as error:
        run_recipe(demo_args(tmp_path / "data", output, option))
    assert "\n" not in str(error.value)
    assert not output.exists() and not (tmp_path / "data").exists()
