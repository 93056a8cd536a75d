"""Pick, don't build: each block choice is one key over a mapping of
factories, only the picked factories are called, and blocks declare what the
trainer, exporter and preflight need."""

import glob
import hashlib
import http.server
import json
import os
import pathlib
import subprocess
import sys
import threading

import pytest
import speechbrain as sb
import torch

from sercaf_toolkit.errors import UserError
from sercaf_toolkit.hparams import compose_tree, load_hparams
from sercaf_toolkit.lobes import SSLStream, Stream
from sercaf_toolkit.lobes.model import describe_model

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEMO = ROOT / "recipes" / "Demo" / "hparams" / "caf.yaml"


def demo_model(tmp_path, *extra, yaml_file=DEMO):
    argv = [
        str(yaml_file),
        f"--data_folder={tmp_path / 'data'}",
        f"--output_folder={tmp_path / 'run'}",
        *extra,
    ]
    _, _, overrides = sb.parse_arguments(argv)
    return load_hparams(yaml_file, overrides)


def weights_hash(model):
    digest = hashlib.sha256()
    for name, value in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(value.detach().float().numpy().tobytes())
    return digest.hexdigest()


def test_an_unused_block_changes_no_initial_weight(tmp_path):
    # A wiring with extra options (a fusion block, a stream set, an encoder,
    # each with random initial weights) that the run does not pick must start
    # from exactly the default run's weights.
    default = weights_hash(demo_model(tmp_path)["model"])
    shared = compose_tree(ROOT / "recipes" / "common" / "dual_stream.yaml")
    fusions = "\n".join(
        f"    {name}: !name:{node.tag.value[len('!name:') :]}\n"
        + "".join(
            f"        {key}: {ruamel_text(value)}\n"
            for key, value in node.items()
        )
        for name, node in shared["fusions"].items()
    )
    extended = tmp_path / "extended.yaml"
    extended.write_text(
        f"extends: [{DEMO}]\n"
        "fusions:\n" + fusions + "    spare: !name:sercaf_toolkit.lobes."
        "SumFusion\n        output_size: 300\n"
        "scratch_encoders:\n"
        "    dpcnn: !name:sercaf_toolkit.lobes.DPCNN\n"
        "        num_filters: !ref <dpcnn_filters>\n"
        "        num_blocks: !ref <dpcnn_blocks>\n"
        "        dropout: !ref <dpcnn_dropout>\n"
        "    wide: !name:sercaf_toolkit.lobes.DPCNN\n"
        "        num_filters: 512\n"
        "stream_sets:\n"
        "    dual: [!ref <ssl_stream>, !ref <scratch_stream>]\n"
        "    spare: [!ref <scratch_stream>, !ref <egemaps_stream>]\n"
    )
    with_extras = demo_model(tmp_path, yaml_file=extended)
    assert weights_hash(with_extras["model"]) == default
    # The test can fail: an unused option built on load (`!new:`, as the
    # old wiring's normalisations and eGeMAPS stream were) draws from the
    # random generator before the model does.
    built_extra = tmp_path / "built_extra.yaml"
    built_extra.write_text(
        f"extends: [{DEMO}]\n"
        "fusions:\n" + fusions + "    spare: !new:torch.nn.Linear [64, 64]\n"
    )
    built = demo_model(tmp_path, yaml_file=built_extra)["model"]
    assert type(built.fusion).__name__ == "CrossAttentionFusion"
    assert weights_hash(built) != default


def ruamel_text(value):
    """A resolved-enough YAML scalar or !ref for re-writing a wiring entry."""
    tag = getattr(getattr(value, "tag", None), "value", None)
    return f"{tag} {value}" if tag else str(value)


def test_a_logmel_run_builds_and_checks_no_ssl_model(tmp_path):
    from sercaf_toolkit.training.recipe import load_recipe

    argv = [
        str(DEMO),
        f"--data_folder={tmp_path / 'data'}",
        f"--output_folder={tmp_path / 'run'}",
        "--ssl_source=/does/not/exist",
    ]
    with pytest.raises(UserError, match="/does/not/exist is not there"):
        load_recipe(argv)  # the SSL stream is picked: its source is checked
    load_recipe([*argv, "--streams=logmel"])  # not picked: not checked
    hparams = demo_model(
        tmp_path, "--streams=logmel", "--ssl_source=/does/not/exist"
    )
    model = hparams["model"]
    assert not any(isinstance(m, SSLStream) for m in model.modules())
    assert describe_model(model)["stream_kinds"] == ["scratch"]
    # The demo's tiny wav2vec2 is built by its factory only for an SSL stream.
    hparams = demo_model(tmp_path, "--streams=logmel")
    assert not (tmp_path / "data" / "tiny_wav2vec2").exists()


def test_a_pick_on_the_command_line_is_that_experiment(tmp_path):
    hparams = demo_model(tmp_path, "--fusion=film")
    assert type(hparams["model"].fusion).__name__ == "FiLMFusion"
    assert hparams["experiment"] == "film"
    hparams = demo_model(tmp_path, "--scratch_encoder=textrcnn")
    assert describe_model(hparams["model"])["streams"][1] == "TextRCNN"
    hparams = demo_model(tmp_path, "--ssl_output=last")
    assert type(hparams["model"].streams[0].output).__name__ == "LastLayer"


def test_a_block_where_a_pick_goes_is_one_line(tmp_path):
    # Experiment files written before picks gave the block itself.
    from sercaf_toolkit.training.recipe import load_recipe

    old_style = tmp_path / "film64.yaml"
    old_style.write_text(
        f"extends: [{DEMO}]\n"
        "fusion: !name:sercaf_toolkit.lobes.FiLMFusion\n"
        "    output_size: 64\n"
    )
    with pytest.raises(UserError, match="fusion is a pick: give it the name"):
        load_recipe([str(old_style), f"--output_folder={tmp_path / 'run'}"])
    assert not (tmp_path / "run").exists()


def yaml_lines(path):
    lines = pathlib.Path(path).read_text().splitlines()
    return [
        line
        for line in lines
        if line.strip() and not line.lstrip().startswith("#")
    ]


def test_experiment_files_are_their_picks():
    files = glob.glob(str(ROOT / "recipes" / "*" / "hparams" / "*.yaml"))
    assert len(files) >= 20
    for path in files:
        lines = yaml_lines(path)
        assert len(lines) <= 8, path
        assert not any("!name:" in line or "!new:" in line for line in lines)
    # Each fusion block's settings live in one file.
    every_yaml = glob.glob(str(ROOT / "recipes" / "**" / "*.yaml"), recursive=1)
    for block in ("CrossAttentionFusion", "SumFusion", "FiLMFusion"):
        holders = [
            p for p in every_yaml if block in pathlib.Path(p).read_text()
        ]
        assert [os.path.basename(p) for p in holders] == ["dual_stream.yaml"]


class _Pretrained(Stream):
    """A new pre-trained family: one class, no edit of brain or export."""

    kind = "pretrained"

    def __init__(self, width=3):
        super().__init__()
        self.body = torch.nn.Linear(1, width)
        self.output_size = width
        self.held = 0

    def pretrained_parameters(self):
        return list(self.body.parameters())

    def pretrained_held(self):
        import contextlib

        self.held += 1
        return contextlib.nullcontext()

    def export_arguments(self):
        return {"width": self.output_size}

    def forward(self, wavs, wav_lens=None):
        frames = self.body(wavs.unfold(1, 160, 160).mean(-1, keepdim=True))
        return frames, torch.ones(frames.shape[:2], dtype=torch.bool)


def test_the_trainer_asks_streams_what_is_pretrained():
    from functools import partial

    from speechbrain.dataio.encoder import CategoricalEncoder

    from sercaf_toolkit.lobes import (
        DPCNN,
        DualStreamModel,
        EmotionHead,
        LogMel,
        SpectrogramStream,
        SumFusion,
    )
    from sercaf_toolkit.training.brain import SERBrain

    pretrained = _Pretrained()
    model = DualStreamModel(
        [pretrained, SpectrogramStream(LogMel(n_mels=8), DPCNN(8, 4, 1))],
        partial(SumFusion, output_size=4),
        partial(EmotionHead, n_classes=2),
    )
    encoder = CategoricalEncoder()
    encoder.update_from_iterable(["a", "b"])
    brain = SERBrain(
        modules={"model": model},
        hparams={
            "label_encoder": encoder,
            "opt_class": partial(torch.optim.SGD, lr=0.1),
            "ssl_opt_class": partial(torch.optim.SGD, lr=0.01),
            "ssl_warmup_steps": 2,
        },
        run_opts={"device": "cpu"},
    )
    brain.init_optimizers()
    ssl_ids = {
        id(p) for g in brain.ssl_optimizer.param_groups for p in g["params"]
    }
    assert ssl_ids == {id(p) for p in pretrained.body.parameters()}
    rest = {id(p) for g in brain.optimizer.param_groups for p in g["params"]}
    assert not ssl_ids & rest
    batch_wavs = torch.randn(2, 1600)
    with brain._ssl_warmup(sb.Stage.TRAIN):
        model(batch_wavs)
    assert pretrained.held == 1  # warm-up holds it, through the interface


def test_export_writes_what_each_stream_asks(tmp_path):
    # A stream's export_arguments replace its recipe arguments in the
    # exported definition (an SSL stream: its config instead of a folder).
    from sercaf_toolkit.deployment.export import export_model

    hparams = demo_model(tmp_path)
    encoder = hparams["label_encoder"]
    encoder.update_from_iterable(["neutral", "happy", "angry", "sad"])
    argv = [
        str(DEMO),
        f"--data_folder={tmp_path / 'data'}",
        f"--output_folder={tmp_path / 'run'}",
    ]
    _, _, overrides = sb.parse_arguments(argv)
    folder = export_model(
        str(DEMO), overrides, hparams["model"], encoder, str(tmp_path / "m")
    )
    exported = (pathlib.Path(folder) / "hyperparams.yaml").read_text()
    assert "build_tiny_ssl_model" not in exported
    assert "model_type: wav2vec2" in exported
    assert "!name:sercaf_toolkit.lobes.WeightedLayerSum" in exported
    assert "fusions" not in exported and "FiLMFusion" not in exported


class _Mirror(http.server.BaseHTTPRequestHandler):
    """A hub mirror that knows one model."""

    asked = []

    def do_GET(self):  # noqa: N802 (http.server's name)
        _Mirror.asked.append(self.path)
        known = self.path.startswith("/api/models/team/emotion-model")
        body = json.dumps({"id": "team/emotion-model"} if known else {})
        self.send_response(200 if known else 404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args):
        pass


def test_the_hub_preflight_asks_the_users_endpoint(tmp_path):
    server = http.server.HTTPServer(("127.0.0.1", 0), _Mirror)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        env = {
            **os.environ,
            "HF_ENDPOINT": f"http://127.0.0.1:{server.server_port}",
            "HF_HUB_OFFLINE": "0",
            "HF_HOME": str(tmp_path / "hf"),
        }
        code = (
            "from sercaf_toolkit.training.preflight import"
            " check_pretrained_source as c\n"
            "c('team/emotion-model')\n"
            "try:\n"
            "    c('team/unknown')\n"
            "except Exception as e:\n"
            "    print(e)\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        server.shutdown()
    assert out.returncode == 0, out.stderr
    assert "has no model team/unknown" in out.stdout
    assert any("team/emotion-model" in path for path in _Mirror.asked)
