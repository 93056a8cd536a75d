"""sercaf export-onnx and ONNX models in EmotionPredictor / sercaf predict."""

import csv
import json
import pathlib
import sys
import warnings

import numpy as np
import pytest
import soundfile
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from sercaf_toolkit import cli  # noqa: E402
from sercaf_toolkit.corpora.demo import synthesize_utterance  # noqa: E402
from sercaf_toolkit.deployment.inference import EmotionPredictor  # noqa: E402
from sercaf_toolkit.deployment.onnx_export import export_onnx  # noqa: E402
from sercaf_toolkit.deployment.onnx_runtime import OnnxModel  # noqa: E402
from sercaf_toolkit.errors import UserError  # noqa: E402
from sercaf_toolkit.lobes.spectrogram import LogMel  # noqa: E402
from tests.helpers import pad_with_noise  # noqa: E402

LABELS = ["neutral", "happy", "angry", "sad"]
# The demo recipe's first fold tests on these two speakers.
TEST_SPEAKERS = ("spk1_f", "spk2_m")


@pytest.fixture(scope="module")
def onnx_models(demo_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("onnx")
    fp32 = export_onnx(demo_model_dir, str(root / "model.onnx"))
    int8 = export_onnx(demo_model_dir, str(root / "int8.onnx"), int8=True)
    return fp32, int8


@pytest.fixture(scope="module")
def torch_predictor(demo_model_dir):
    return EmotionPredictor(demo_model_dir)


def demo_waves(per_emotion=2, seed=0):
    return [
        torch.from_numpy(synthesize_utterance(speaker, emotion, seed + i))
        for speaker in TEST_SPEAKERS
        for emotion in LABELS
        for i in range(per_emotion)
    ]


def test_logmel_exports_to_the_same_features(tmp_path):
    """torch.stft is traced as ONNX's STFT, at any batch and length."""
    ort = pytest.importorskip("onnxruntime")

    class Features(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.logmel = LogMel(n_mels=64)

        def forward(self, wavs, lens):
            return self.logmel(wavs, lens)[0]

    module = Features().eval()
    path = str(tmp_path / "logmel.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (torch.randn(2, 8000), torch.tensor([1.0, 0.5])),
            path,
            input_names=["wavs", "lens"],
            dynamic_axes={"wavs": {0: "b", 1: "t"}, "lens": {0: "b"}},
            opset_version=17,
            dynamo=False,
        )
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    waves = [torch.from_numpy(synthesize_utterance("spk3_f", "angry", 1))]
    waves += [0.1 * torch.randn(n) for n in (20000, 5123)]
    wavs, lens = pad_with_noise(waves)
    expected = module(wavs, lens)
    (ours,) = session.run(None, {"wavs": wavs.numpy(), "lens": lens.numpy()})
    scale = expected.abs().max()
    assert float((torch.from_numpy(ours) - expected).abs().max()) < 1e-5 * scale


def test_fp32_gives_pytorch_log_probabilities(onnx_models, torch_predictor):
    """A padded batch (another size than the trace's) and single files."""
    model = OnnxModel(onnx_models[0]["path"])
    embedding = torch_predictor.classifier.mods.embedding_model
    waves = demo_waves(per_emotion=1)[:5]
    wavs, lens = pad_with_noise(waves)
    with torch.no_grad():
        expected = embedding.log_probabilities(wavs, lens)
    torch.testing.assert_close(
        model.log_probabilities(wavs, lens), expected, atol=1e-4, rtol=0
    )
    for wave in waves[:3]:
        with torch.no_grad():
            alone = embedding.log_probabilities(wave[None], torch.ones(1))
        torch.testing.assert_close(
            model.log_probabilities(wave[None], torch.ones(1)),
            alone,
            atol=1e-4,
            rtol=0,
        )
    assert model.labels == LABELS
    assert (
        model.metadata["sercaf_version"]
        == __import__("sercaf_toolkit").__version__
    )


@pytest.fixture(scope="module")
def trained_demo(tmp_path_factory):
    """A demo model trained for 3 epochs (an untrained one labels all
    utterances alike, which any quantisation would agree with)."""
    from sercaf_toolkit.training.recipe import run_recipe
    from tests.demo_runs import demo_args

    root = tmp_path_factory.mktemp("trained")
    return run_recipe(demo_args(root / "data", root / "run"))


def test_int8_is_smaller_and_agrees_on_the_demo_test_set(
    onnx_models, trained_demo, tmp_path
):
    fp32, int8 = onnx_models
    assert int8["bytes"] < fp32["bytes"]
    folder = trained_demo.inference_folder
    full = export_onnx(folder, str(tmp_path / "fp32.onnx"))
    small = export_onnx(folder, str(tmp_path / "int8.onnx"), int8=True)
    assert small["bytes"] < full["bytes"]
    test_csv = pathlib.Path(trained_demo.output_folder) / "test.csv"
    paths = [row["wav"] for row in csv.DictReader(test_csv.open())]
    labels = {}
    for name, model in (("fp32", full), ("int8", small)):
        records, _ = EmotionPredictor(model["path"]).predict(paths)
        labels[name] = [record["label"] for record in records]
    assert len(set(labels["fp32"])) > 1  # a model that tells classes apart
    agreement = np.mean([a == b for a, b in zip(*labels.values())])
    assert agreement >= 0.97, labels
    assert OnnxModel(small["path"]).metadata["quantisation"] == "dynamic int8"
    import onnx

    graph = onnx.load(small["path"]).graph
    (mel,) = [t for t in graph.initializer if "mel_scale.fb" in t.name]
    assert mel.data_type == onnx.TensorProto.FLOAT16  # not int8
    assert any(node.op_type == "MatMulInteger" for node in graph.node)


def bad_folder(folder):
    """Good files, a long one (a timeline), and files that fail."""
    folder.mkdir()
    wav = synthesize_utterance("spk1_f", "angry", 3)
    soundfile.write(folder / "a.wav", wav, 16000)
    soundfile.write(folder / "b_stereo.wav", np.stack([wav, wav], 1), 16000)
    parts = [synthesize_utterance("spk2_m", e, 2) for e in LABELS * 3]
    soundfile.write(
        folder / "c_long.wav", np.concatenate(parts)[:240000], 16000
    )
    (folder / "d_corrupt.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk")
    soundfile.write(folder / "e_empty.wav", np.zeros(0), 16000)
    good = (folder / "a.wav").read_bytes()
    (folder / "f_truncated.wav").write_bytes(good[:3000])
    return folder


def test_predict_with_onnx_writes_the_pytorch_rows(
    onnx_models, demo_model_dir, tmp_path, capsys
):
    folder = bad_folder(tmp_path / "in")
    results = {}
    for name, model in (("torch", demo_model_dir), ("onnx", onnx_models[0])):
        out = tmp_path / f"{name}.csv"
        model = model if name == "torch" else model["path"]
        code = cli.main(
            ["predict", model, str(folder), "--out", str(out),
             "--long-threshold", "10", "--no-progress"]
        )  # fmt: skip
        results[name] = code, list(csv.DictReader(out.open()))
        assert "3 failed" in capsys.readouterr().err
    (torch_code, torch_rows), (onnx_code, onnx_rows) = results.values()
    assert torch_code == onnx_code == 1
    assert len(onnx_rows) == len(torch_rows) >= 6
    long_rows = [row for row in onnx_rows if row["path"].endswith("c_long.wav")]
    assert float(long_rows[-1]["end"]) == 15.0  # a timeline: 15 s > 10 s
    for ours, theirs in zip(onnx_rows, torch_rows):
        assert list(ours) == list(theirs)
        for key in ("path", "start", "end", "label", "error"):
            assert ours[key] == theirs[key]
        for key in [k for k in ours if k.startswith(("prob_", "score"))]:
            if theirs[key]:
                assert float(ours[key]) == pytest.approx(
                    float(theirs[key]), abs=1e-4
                )
            else:
                assert ours[key] == ""


def test_onnx_timeline_windows_match_pytorch(onnx_models, torch_predictor):
    onnx_predictor = EmotionPredictor(onnx_models[0]["path"])
    parts = [synthesize_utterance("spk2_m", e, 5) for e in LABELS * 2]
    recording = torch.from_numpy(np.concatenate(parts))
    ours, _ = onnx_predictor.timeline(recording, merge=False)
    theirs, _ = torch_predictor.timeline(recording, merge=False)
    assert len(ours) == len(theirs) > 3
    for mine, reference in zip(ours, theirs):
        assert mine["label"] == reference["label"]
        assert mine["score"] == pytest.approx(reference["score"], abs=1e-4)


def test_onnx_mistakes_are_one_line(
    onnx_models, demo_model_dir, tmp_path, capsys, monkeypatch
):
    path = onnx_models[0]["path"]
    with pytest.raises(UserError, match="ONNX model"):
        EmotionPredictor(path).attention("any.wav")
    audio = tmp_path / "a.wav"
    soundfile.write(audio, synthesize_utterance("spk1_f", "sad", 0), 16000)
    cases = [
        (["attention", path, str(audio)], "exported from"),
        (["predict", str(tmp_path / "gone.onnx"), str(audio)], "gone.onnx"),
        (["export-onnx", demo_model_dir, str(tmp_path / "m.txt")], ".onnx"),
        (["export-onnx", str(tmp_path), str(tmp_path / "m.onnx")], "model"),
    ]
    not_onnx = tmp_path / "text.onnx"
    not_onnx.write_text("not a model")
    cases.append((["predict", str(not_onnx), str(audio)], "cannot be loaded"))
    import onnx

    other = tmp_path / "other.onnx"  # a valid ONNX model, not ours
    onnx.save(
        onnx.helper.make_model(
            onnx.helper.make_graph(
                [onnx.helper.make_node("Identity", ["x"], ["y"])],
                "identity",
                [onnx.helper.make_tensor_value_info("x", 1, [None])],
                [onnx.helper.make_tensor_value_info("y", 1, [None])],
            )
        ),
        str(other),
    )
    cases.append((["predict", str(other), str(audio)], "not written by"))
    for argv, words in cases:
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("sercaf: error: ") and err.count("\n") == 1
        assert words in err
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # not installed
    assert cli.main(["predict", path, str(audio)]) == 2
    assert 'pip install -e ".[onnx]"' in capsys.readouterr().err
    with pytest.raises(UserError, match="onnxruntime is not installed"):
        OnnxModel(path)


def test_export_onnx_command_writes_labels_in_metadata(
    demo_model_dir, tmp_path, capsys
):
    out = tmp_path / "cli.onnx"
    assert cli.main(["export-onnx", demo_model_dir, str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    import onnx

    metadata = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(metadata["labels"]) == LABELS
    assert pathlib.Path(out).stat().st_size > 0


@pytest.mark.parametrize(
    "ssl_type, encoder, fusion",
    [
        ("hubert", "textrcnn", "SumFusion"),
        ("wavlm", "textrcnn_lai", "FiLMFusion"),
        ("wav2vec2", "dpcnn", "ConcatFusion"),
        ("wav2vec2", "dpcnn", "PaperCAF"),
    ],
)
def test_every_stream_and_fusion_exports(
    tiny_ssl_source, tmp_path, ssl_type, encoder, fusion
):
    from functools import partial

    from sercaf_toolkit import lobes
    from sercaf_toolkit.deployment.onnx_export import export_module

    torch.manual_seed(0)
    encoders = {
        "textrcnn": lambda: lobes.TextRCNN(32, 16, 8),
        "textrcnn_lai": lambda: lobes.TextRCNN(32, 16, 8, form="lai"),
        "dpcnn": lambda: lobes.DPCNN(32, 16, 2),
    }
    model = lobes.DualStreamModel(
        [
            lobes.SSLStream(tiny_ssl_source(ssl_type)),
            lobes.SpectrogramStream(LogMel(n_mels=32), encoders[encoder]()),
        ],
        partial(getattr(lobes, fusion), output_size=12),
        partial(lobes.EmotionHead, n_classes=3),
    ).eval()
    path = str(tmp_path / "model.onnx")
    export_module(model, ["a", "b", "c"], path)  # checks its own batch
    wavs, lens = pad_with_noise([torch.randn(n) for n in (30000, 9000, 17000)])
    with torch.no_grad():
        expected = model.log_probabilities(wavs, lens)
    torch.testing.assert_close(
        OnnxModel(path).log_probabilities(wavs, lens),
        expected,
        atol=1e-4,
        rtol=0,
    )


def test_an_egemaps_stream_is_refused_in_one_line(tmp_path):
    from sercaf_toolkit.deployment.onnx_export import export_module
    from sercaf_toolkit.lobes import EGeMAPSDescriptors

    model = torch.nn.Sequential(EGeMAPSDescriptors())
    with pytest.raises(UserError, match="EGeMAPSDescriptors block"):
        export_module(model, ["a"], str(tmp_path / "m.onnx"))
