"""The private or undocumented APIs of SpeechBrain, transformers and
ruamel.yaml that the toolkit relies on (listed in setup.py) still exist and
still behave as the toolkit expects.

A new release may drop or change any of them without notice; each test
names the API and the toolkit code that uses it, so that a failure after an
upgrade says what to fix instead of surfacing deep inside training. All
checks run on tiny models and folders: seconds in all.
"""

import inspect
import io
import pathlib

import pytest
import ruamel.yaml
import speechbrain as sb
import torch
import transformers
from speechbrain.utils.checkpoints import CKPT_PREFIX, Checkpointer

from sercaf_toolkit.tiny_ssl import build_tiny_ssl_model

# Where the toolkit uses each API (keep in step with setup.py's list).
USERS = {
    "speechbrain Brain._train_loader_specifics": (
        "SERBrain._train_loader_specifics in sercaf_toolkit/training/brain.py"
    ),
    "speechbrain Brain.train_sampler": (
        "SERBrain._train_loader_specifics in sercaf_toolkit/training/brain.py "
        "(a dynamic batch sampler is told the epoch through it)"
    ),
    "speechbrain Checkpointer._new_checkpoint_dirpath": (
        "AtomicCheckpointer in sercaf_toolkit/training/checkpoints.py"
    ),
    "speechbrain Checkpointer._custom_checkpoint_dirpath": (
        "AtomicCheckpointer in sercaf_toolkit/training/checkpoints.py"
    ),
    "transformers <Model>._get_feat_extract_output_lengths": (
        "SSLStream.forward in sercaf_toolkit/lobes/ssl.py"
    ),
    "transformers <Model>.feature_extractor._freeze_parameters": (
        "SSLStream.__init__ in sercaf_toolkit/lobes/ssl.py"
    ),
    "transformers <Model>.feature_extractor.conv_layers[0].conv/.layer_norm": (
        "SSLStream.__init__ and SSLStream._group_norm_lengths "
        "(LengthAwareGroupNorm) in sercaf_toolkit/lobes/ssl.py"
    ),
    "ruamel.yaml node.ca": (
        "_drop_comments in sercaf_toolkit/hparams.py and "
        "_block_style_without_comments in sercaf_toolkit/deployment/export.py"
    ),
    "ruamel.yaml node.fa.set_block_style": (
        "_block_style_without_comments in sercaf_toolkit/deployment/export.py"
    ),
    "ruamel.yaml node.tag.value": (
        "only_chosen in sercaf_toolkit/hparams.py and export_model in "
        "sercaf_toolkit/deployment/export.py"
    ),
}


def broken(api, what):
    """The failure message: the API, what changed, who relies on it."""
    return (
        f"{api} {what}. The toolkit relies on it in {USERS[api]}; adapt "
        "that code (or pin the older release in setup.py), see the list "
        "of private APIs in setup.py."
    )


def require_method(owner, name, api, parameters):
    """Fails unless ``owner.name`` exists with these parameter names."""
    if not callable(getattr(owner, name, None)):
        kind = owner if isinstance(owner, type) else type(owner)
        pytest.fail(broken(api, f"is gone from {kind.__name__}"))
    found = list(inspect.signature(getattr(owner, name)).parameters)
    assert found[: len(parameters)] == parameters, broken(
        api, f"now takes {found}, not {parameters}"
    )


# SpeechBrain ---------------------------------------------------------------


class _TinyBrain(sb.Brain):
    """A Brain on a linear layer, for the Brain hooks only."""

    def compute_forward(self, batch, stage):
        return self.modules.linear(batch)

    def compute_objectives(self, predictions, batch, stage):
        return predictions.pow(2).mean()


def _tiny_brain(cls=_TinyBrain):
    return cls(
        modules={"linear": torch.nn.Linear(2, 1)},
        opt_class=lambda params: torch.optim.SGD(params, lr=0.1),
        run_opts={"device": "cpu"},
    )


def test_brain_train_loader_specifics():
    api = "speechbrain Brain._train_loader_specifics"
    require_method(
        sb.Brain,
        "_train_loader_specifics",
        api,
        ["self", "dataset", "loader_kwargs"],
    )

    calls = []

    class Recording(_TinyBrain):
        def _train_loader_specifics(self, dataset, loader_kwargs):
            loader_kwargs = super()._train_loader_specifics(
                dataset, loader_kwargs
            )
            calls.append(dict(loader_kwargs))
            return {**loader_kwargs, "batch_size": 3}

    brain = _tiny_brain(Recording)
    data = [torch.zeros(2) for _ in range(6)]
    loader = brain.make_dataloader(data, sb.Stage.TRAIN, batch_size=2)
    assert calls == [{"batch_size": 2}], broken(
        api, "is no longer called by make_dataloader for the TRAIN stage"
    )
    assert loader.batch_size == 3, broken(
        api, "no longer returns the loader arguments that make_dataloader uses"
    )
    brain.make_dataloader(data, sb.Stage.VALID, batch_size=2)
    assert len(calls) == 1, broken(api, "is now called for VALID as well")


def test_brain_calls_train_sampler_set_epoch():
    api = "speechbrain Brain.train_sampler"
    brain = _tiny_brain()
    assert hasattr(brain, "train_sampler") and brain.train_sampler is None, (
        broken(api, "is no longer set to None by Brain.__init__")
    )

    class Sampler:
        def __init__(self):
            self.epochs = []

        def set_epoch(self, epoch):
            self.epochs.append(epoch)

    sampler = brain.train_sampler = Sampler()
    loader = torch.utils.data.DataLoader([torch.zeros(2)] * 2, batch_size=2)
    brain.fit([1, 2], loader, progressbar=False)
    assert sampler.epochs == [1, 2], broken(
        api, "no longer gets set_epoch(epoch) at the start of each epoch"
    )


@pytest.mark.parametrize(
    "name, arguments",
    [
        ("_new_checkpoint_dirpath", ()),
        ("_custom_checkpoint_dirpath", ("best",)),
    ],
)
def test_checkpointer_dirpath_hooks(tmp_path, name, arguments):
    api = f"speechbrain Checkpointer.{name}"
    require_method(
        Checkpointer, name, api, ["self", "name"][: 1 + len(arguments)]
    )
    plain = Checkpointer(tmp_path / "plain")
    path = getattr(plain, name)(*arguments)
    assert isinstance(path, pathlib.Path), broken(api, "no longer gives a Path")
    assert path.parent == plain.checkpoints_dir, broken(
        api, f"now gives {path}, outside the checkpoints folder"
    )
    assert path.name.startswith(CKPT_PREFIX) and not path.exists(), broken(
        api, f"now gives {path.name} (a {CKPT_PREFIX}... folder not made yet)"
    )

    class Redirected(Checkpointer):  # what AtomicCheckpointer does
        pass

    def hidden(self, *args):
        final = getattr(Checkpointer, name)(self, *args)
        return final.with_name(".hidden-" + final.name)

    setattr(Redirected, name, hidden)
    checkpointer = Redirected(
        tmp_path / "redirected", {"linear": torch.nn.Linear(1, 1)}
    )
    saved = checkpointer.save_checkpoint(
        name=arguments[0] if arguments else None
    )
    assert saved.path.name.startswith(".hidden-" + CKPT_PREFIX), broken(
        api,
        f"is no longer where save_checkpoint writes (it wrote {saved.path})",
    )
    assert (saved.path / "linear.ckpt").exists()
    assert checkpointer.list_checkpoints() == [], broken(
        api,
        "names a folder that list_checkpoints now lists although it lacks "
        f"the {CKPT_PREFIX} prefix (partial checkpoints would be loaded)",
    )


# transformers --------------------------------------------------------------

MODEL_TYPES = ["wav2vec2", "hubert", "wavlm"]


@pytest.fixture(scope="module", params=MODEL_TYPES)
def ssl_model(request, tmp_path_factory):
    """The toolkit's tiny model of each type, as SSLStream loads it."""
    folder = tmp_path_factory.mktemp(request.param) / "model"
    model = transformers.AutoModel.from_pretrained(
        build_tiny_ssl_model(str(folder), request.param)
    )
    return model.train()


def test_model_classes_have_get_feat_extract_output_lengths():
    api = "transformers <Model>._get_feat_extract_output_lengths"
    for model_class in (
        transformers.Wav2Vec2Model,
        transformers.HubertModel,
        transformers.WavLMModel,
    ):
        require_method(
            model_class, "_get_feat_extract_output_lengths", api, ["self"]
        )


def test_get_feat_extract_output_lengths(ssl_model):
    api = "transformers <Model>._get_feat_extract_output_lengths"
    require_method(ssl_model, "_get_feat_extract_output_lengths", api, [])
    lengths = torch.tensor([400, 401, 719, 720, 16000, 12345])
    frames = ssl_model._get_feat_extract_output_lengths(lengths)
    expected = lengths.clone()
    config = ssl_model.config
    for kernel, stride in zip(config.conv_kernel, config.conv_stride):
        expected = (expected - kernel) // stride + 1  # Conv1d, no padding
    assert torch.equal(frames, expected), broken(
        api, f"gives {frames.tolist()}, not the conv arithmetic's {expected}"
    )
    with torch.no_grad():
        for length, count in zip(lengths[:4], frames[:4]):
            out = ssl_model.feature_extractor(torch.randn(1, int(length)))
            assert out.shape[-1] == count, broken(
                api,
                f"says {count} frames for {length} samples, CNN gives "
                f"{out.shape[-1]}",
            )


def test_feature_extractor_freeze_parameters(ssl_model):
    api = "transformers <Model>.feature_extractor._freeze_parameters"
    require_method(ssl_model.feature_extractor, "_freeze_parameters", api, [])
    ssl_model.feature_extractor._freeze_parameters()
    assert not any(
        p.requires_grad for p in ssl_model.feature_extractor.parameters()
    ), broken(api, "no longer freezes the CNN's parameters")
    ssl_model.feature_extractor.train()
    out = ssl_model.feature_extractor(torch.randn(1, 800))
    assert not out.requires_grad, broken(
        api,
        "no longer stops the CNN from asking its input for gradients in "
        "training mode (backward would run through the frozen CNN)",
    )


def test_feature_extractor_first_layer_layout(ssl_model):
    api = (
        "transformers <Model>.feature_extractor.conv_layers[0].conv/.layer_norm"
    )
    layers = getattr(ssl_model.feature_extractor, "conv_layers", None)
    assert layers is not None and len(layers) == len(
        ssl_model.config.conv_kernel
    ), broken(api, "is gone: no conv_layers, one per CNN layer")
    first = layers[0]
    conv = getattr(first, "conv", None)
    norm = getattr(first, "layer_norm", None)
    assert isinstance(conv, torch.nn.Conv1d), broken(api, "has no Conv1d conv")
    assert conv.kernel_size[0] == ssl_model.config.conv_kernel[0]
    assert conv.stride[0] == ssl_model.config.conv_stride[0]
    # The tiny models' feat_extract_norm is "group", as in the base ones.
    assert isinstance(norm, torch.nn.GroupNorm), broken(
        api, f"has {type(norm).__name__} as layer_norm, not GroupNorm"
    )
    assert norm.num_groups == norm.num_channels, broken(
        api, "GroupNorm no longer has one group per channel"
    )

    class Recording(torch.nn.Module):
        def __init__(self, norm):
            super().__init__()
            self.norm, self.calls = norm, 0

        def forward(self, x):
            self.calls += 1
            return self.norm(x)

    recording = Recording(norm)
    first.layer_norm = recording
    try:
        with torch.no_grad():
            ssl_model.feature_extractor(torch.randn(1, 800))
    finally:
        first.layer_norm = norm
    assert recording.calls == 1, broken(
        api, "a replaced layer_norm is no longer what the layer runs"
    )


# ruamel.yaml ---------------------------------------------------------------


def _round_trip(text):
    return ruamel.yaml.YAML().load(text)


def _dump(tree):
    out = io.StringIO()
    ruamel.yaml.YAML().dump(tree, out)
    return out.getvalue()


def test_ruamel_comment_attribute():
    api = "ruamel.yaml node.ca"
    tree = _round_trip("# head\na: 1  # side\nb:\n  c: 2  # inner\n")
    for node in (tree, tree["b"]):
        ca = getattr(node, "ca", None)
        assert ca is not None and isinstance(ca.items, dict), broken(
            api, "has no .ca.items mapping"
        )
        assert hasattr(ca, "comment"), broken(api, "has no .ca.comment")
        ca.items.clear()
        ca.comment = None
    assert "#" not in _dump(tree), broken(
        api, "clearing .ca.items and .ca.comment no longer drops comments"
    )


def test_ruamel_flow_attribute():
    api = "ruamel.yaml node.fa.set_block_style"
    tree = _round_trip("a: [1, 2]\nb: {c: 3}\n")
    for node in (tree["a"], tree["b"]):
        fa = getattr(node, "fa", None)
        set_block_style = getattr(fa, "set_block_style", None)
        assert callable(set_block_style), broken(api, "is gone")
        set_block_style()
    assert _dump(tree) == "a:\n- 1\n- 2\nb:\n  c: 3\n", broken(
        api, "no longer turns flow style into block style"
    )


def test_ruamel_tag_value():
    api = "ruamel.yaml node.tag.value"
    tree = _round_trip(
        "a: !apply:operator.getitem [{x: 1}, x]\n"
        "b: !new:sercaf_toolkit.lobes.SSLStream\n  source: s\n"
    )
    for key, tag in (
        ("a", "!apply:operator.getitem"),
        ("b", "!new:sercaf_toolkit.lobes.SSLStream"),
    ):
        value = getattr(getattr(tree[key], "tag", None), "value", None)
        assert value == tag, broken(api, f"gives {value!r}, not {tag!r}")
