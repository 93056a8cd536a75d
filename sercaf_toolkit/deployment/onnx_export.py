"""ONNX export of a model folder (the runner is in onnx_runtime).

``sercaf export-onnx MODEL_DIR OUT.onnx [--int8]`` writes one ONNX file
that maps a batch of 16 kHz waveforms ``wavs`` (``[batch, samples]``
float32, padded at the end) and their relative lengths ``lens``
(``[batch]`` float32, SpeechBrain's convention) to class log-probabilities
``log_probs`` (``[batch, classes]``). Batch and length axes are dynamic,
and padding is handled inside the graph exactly as in PyTorch, so a padded
batch gives each file's single-file result. The metadata hold the class
labels (a JSON list, ``labels``), the toolkit version (``sercaf_version``)
and the sample rate (``sample_rate``).

Two parts of the PyTorch model do not trace into a graph that runs at any
length, and are replaced by equivalents while exporting: the log-mel front
end's torchaudio spectrogram (a plain ``torch.stft`` that the exporter
maps to ONNX's STFT operator, see
:class:`~sercaf_toolkit.lobes.spectrogram.LogMel`) and
``torch.nn.MultiheadAttention`` in cross-attention fusion (written out).

``--int8`` applies onnxruntime's dynamic quantisation (int8 weights,
activations quantised per batch) to the matrix products of the
transformer, projections and heads. The log-mel front end keeps float32:
its mel projection sees powers spanning many decades, which an 8-bit
activation scale would flatten.

:class:`~sercaf_toolkit.deployment.onnx_runtime.OnnxModel` runs such a file with
onnxruntime; :class:`~sercaf_toolkit.deployment.inference.EmotionPredictor` and
``sercaf predict`` use it for a model path ending in ``.onnx``. onnx and
onnxruntime are an optional extra: ``pip install -e ".[onnx]"``.

Authors
 * sercaf-toolkit developers 2026
"""

import json
import logging
import os
import tempfile

import numpy
import torch

from sercaf_toolkit.deployment.onnx_runtime import (
    DIMENSIONS_OUTPUT,
    INPUTS,
    OUTPUT,
    SAMPLE_RATE,
    OnnxModel,
    require,
)
from sercaf_toolkit.errors import UserError
from sercaf_toolkit.lobes.model import LogProbabilities

# Opset 17: LayerNormalization is a single node (smaller, faster graphs).
OPSET = 17


def _example_batch():
    """Two utterances, the second padded: the trace must see padding.

    transformers drops an all-ones attention mask; traced on an unpadded
    batch, the graph would never apply one.
    """
    generator = torch.Generator().manual_seed(0)
    wavs = 0.1 * torch.randn(2, 24000, generator=generator)
    return wavs, torch.tensor([1.0, 0.6])


def export_onnx(model_dir, out_path, int8=False, check=True):
    """Exports a model folder as one ONNX file (optionally int8).

    Arguments
    ---------
    model_dir : str
        An exported model folder (see :mod:`sercaf_toolkit.deployment.export`).
    out_path : str
        The ``.onnx`` file to write.
    int8 : bool
        Apply onnxruntime's dynamic int8 quantisation.
    check : bool
        Run the written file on a padded batch and compare it with
        PyTorch (fp32: to 1e-4; int8: the same labels), failing if not.

    Returns
    -------
    dict
        ``path``, ``labels``, ``bytes`` (file size) and ``max_difference``
        (largest log-probability difference from PyTorch on the check
        batch; None without ``check``).

    Raises
    ------
    UserError
        If onnx or onnxruntime are missing or the folder is not a model.
    """
    require("onnx")
    require("onnxruntime")
    from sercaf_toolkit.deployment.inference import EmotionPredictor
    from sercaf_toolkit.deployment.speakers import read_record

    # The graph takes normalised audio as the folder's model does; the
    # record travels in the metadata, so that the runtime refuses raw
    # audio too. No enrolment is needed to export: the guard is lifted.
    record = read_record(model_dir)
    predictor = (
        EmotionPredictor(model_dir, segment="window", speaker_audio=None)
        if not record
        else _unguarded_predictor(model_dir)
    )
    return export_module(
        predictor.classifier.mods.embedding_model,
        predictor.labels,
        out_path,
        int8=int8,
        check=check,
        input_normalization=record,
    )


def _unguarded_predictor(model_dir):
    """A speaker-normalised folder loaded without enrolment (to export)."""
    from sercaf_toolkit.deployment.inference import EmotionPredictor

    predictor = EmotionPredictor.__new__(EmotionPredictor)
    predictor._tmp = None
    predictor._load_folder(model_dir, "cpu", None)
    return predictor


def export_module(
    model, labels, out_path, int8=False, check=True, input_normalization=None
):
    """Exports a model (in memory) as one ONNX file (optionally int8).

    Arguments
    ---------
    model : torch.nn.Module
        Any module with ``log_probabilities(wavs, wav_lens)``, such as
        :class:`~sercaf_toolkit.lobes.model.DualStreamModel`.
    labels : list of str
        The class labels, in output order.
    out_path, int8, check
        As for :func:`export_onnx`, which returns the same.
    input_normalization : dict, optional
        The speaker normalisation the model was trained with, kept in the
        metadata (``input_normalization``, JSON).
    """
    require("onnx")
    require("onnxruntime")
    for module in model.modules():
        # A block computed outside torch (openSMILE's eGeMAPS, in C++) says
        # so; the graph cannot hold it.
        if not getattr(module, "onnx_exportable", True):
            raise UserError(
                f"the model has a {type(module).__name__} block, which runs "
                "outside torch and cannot be exported to ONNX; export a "
                "model without it, or serve this one with sercaf predict on "
                "its model folder"
            )
    regressor = getattr(model, "regressor", None)
    if regressor is None:
        # The graph's one entry point: (wavs, lens) -> log-probabilities.
        model = LogProbabilities(model)
        outputs = [OUTPUT]
    else:
        model = _TaskOutputs(model)
        outputs = model.names
    model.eval()
    wavs, lens = _example_batch()
    with tempfile.TemporaryDirectory(prefix="sercaf_onnx_") as scratch:
        fp32_path = os.path.join(scratch, "model.onnx")
        _trace(model, (wavs, lens), fp32_path, outputs)
        described = {
            OUTPUT: "log_probs [batch, classes] float32",
            DIMENSIONS_OUTPUT: "dimensions [batch, dimensions] float32 on "
            "the corpus's scale (dimension_scale)",
        }
        metadata = {
            "labels": json.dumps(list(labels)),
            "sercaf_version": _version(),
            "sample_rate": str(SAMPLE_RATE),
            "inputs": "wavs [batch, samples] float32 16 kHz, padded at the "
            "end; lens [batch] float32 relative lengths",
            "outputs": "; ".join(described[name] for name in outputs),
            "quantisation": "dynamic int8" if int8 else "none",
        }
        if regressor is not None:
            metadata["dimensions"] = json.dumps(list(regressor.dimensions))
            metadata["dimension_scale"] = json.dumps(
                [float(regressor.low), float(regressor.high)]
            )
        if input_normalization:
            metadata["input_normalization"] = json.dumps(input_normalization)
        if int8:
            quantised = os.path.join(scratch, "int8.onnx")
            _quantise(fp32_path, quantised)
            fp32_path = quantised
        _write_with_metadata(fp32_path, out_path, metadata)
    difference = None
    if check and regressor is not None:
        # Every output is compared with PyTorch's, to 1e-4 in fp32; int8
        # is not held to a figure for the values (as for the labels below,
        # on noise).
        with torch.no_grad():
            references = model(wavs, lens)
        ours = OnnxModel(out_path).outputs(wavs, lens)
        ours = [o for o in ours if o is not None]
        difference = max(
            float((o - r).abs().max()) for o, r in zip(ours, references)
        )
        if not int8 and difference > 1e-4:
            raise RuntimeError(
                f"{out_path} differs from the PyTorch model by {difference}"
                " on the check batch: an export bug, please report it"
            )
    elif check:
        with torch.no_grad():
            reference = model(wavs, lens)
        ours = OnnxModel(out_path).log_probabilities(wavs, lens)
        difference = float((ours - reference).abs().max())
        # Labels are compared where PyTorch's choice is clear: on the
        # noise of the check batch two classes can be nearly tied, and
        # int8 may then pick the other one without being wrong.
        top = reference.topk(2, dim=-1).values
        clear = (top[:, 0] - top[:, 1]) > 0.1
        agree = ours.argmax(-1) == reference.argmax(-1)
        same_labels = bool(agree[clear].all())
        if (not int8 and difference > 1e-4) or not same_labels:
            raise RuntimeError(
                f"{out_path} differs from the PyTorch model by {difference}"
                " on the check batch: an export bug, please report it"
            )
    return {
        "path": out_path,
        "labels": list(labels),
        "bytes": os.path.getsize(out_path),
        "max_difference": difference,
    }


def _version():
    import sercaf_toolkit

    return sercaf_toolkit.__version__


class _TaskOutputs(torch.nn.Module):
    """A dimensional or joint model's graph outputs, by name.

    ``log_probs`` (joint only), then ``dimensions``: ``[B, D]`` on the
    corpus's scale, as the model folder gives them.
    """

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.names = ([OUTPUT] if model.classifier is not None else []) + [
            DIMENSIONS_OUTPUT
        ]

    def forward(self, wavs, wav_lens):
        """The outputs named in :attr:`names`, in that order."""
        embeddings = self.model(wavs, wav_lens)
        values = self.model.regressor(embeddings)
        if self.model.classifier is None:
            return (values,)
        return self.model.classifier(embeddings), values


def _trace(model, example, path, outputs=(OUTPUT,)):
    """TorchScript-based export with dynamic batch and length axes."""
    import warnings

    with warnings.catch_warnings():
        # The tracer's notes on Python values (checks of widths, constant
        # windows and filterbanks) concern values the same at every length.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            example,
            path,
            input_names=list(INPUTS),
            output_names=list(outputs),
            dynamic_axes={
                "wavs": {0: "batch", 1: "samples"},
                "lens": {0: "batch"},
                **{name: {0: "batch"} for name in outputs},
            },
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )


def _quantise(source, target):
    """Dynamic int8 quantisation of MatMul/Gemm outside the front end.

    The mel projection (a MatMul under ``.../frontend/``) multiplies
    powers spanning ~10 decades: one int8 scale per batch would floor all
    but the loudest bins. It stays a float product, with its filterbank
    stored in float16 (a relative error of ~5e-4 in each band's power,
    0.002 dB) and cast back to float32 when the model loads.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    proto = onnx.load(source)
    graph = proto.graph
    # Node names follow the module path (the TorchScript exporter's scope
    # names); the filterbank's initializer keeps its state-dict name: the
    # mel product is found by either.
    keep_float = [
        node.name
        for node in graph.node
        if "/frontend/" in node.name
        or any(name.endswith("mel_scale.fb") for name in node.input)
    ]
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    for node in list(graph.node):
        if node.name not in keep_float or node.op_type != "MatMul":
            continue
        for slot, name in enumerate(node.input):
            tensor = initializers.get(name)
            if tensor is None or tensor.data_type != onnx.TensorProto.FLOAT:
                continue
            values = onnx.numpy_helper.to_array(tensor).astype(numpy.float16)
            tensor.CopyFrom(onnx.numpy_helper.from_array(values, name + "_f16"))
            cast = onnx.helper.make_node(
                "Cast",
                [name + "_f16"],
                [name],
                to=onnx.TensorProto.FLOAT,
                name=node.name + "_cast" + str(slot),
            )
            graph.node.insert(list(graph.node).index(node), cast)
    half = source + ".f16.onnx"
    onnx.save(proto, half)
    # quantize_dynamic logs a root-logger advice to pre-process the graph
    # (shape inference for static quantisation): not ours to act on. It
    # logs with logging.warning(), which would also give a root logger
    # without handlers a stderr handler for good (and every INFO line of
    # SpeechBrain's loggers after it would show): a NullHandler prevents it.
    root = logging.getLogger()
    level = root.level
    silent = logging.NullHandler()
    root.addHandler(silent)
    root.setLevel(logging.ERROR)
    try:
        quantize_dynamic(
            half,
            target,
            op_types_to_quantize=["MatMul", "Gemm"],
            nodes_to_exclude=keep_float,
            weight_type=QuantType.QInt8,
        )
    finally:
        root.setLevel(level)
        root.removeHandler(silent)


def _write_with_metadata(source, target, metadata):
    import onnx

    proto = onnx.load(source)
    del proto.metadata_props[:]
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "sercaf-toolkit"
    proto.producer_version = metadata["sercaf_version"]
    onnx.save(proto, target)
