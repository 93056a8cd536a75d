"""Running an exported ONNX emotion model with onnxruntime.

:class:`OnnxModel` loads a file written by ``sercaf export-onnx`` (see
:mod:`sercaf_toolkit.deployment.onnx_export`) and gives the log-probabilities
of a
padded batch of 16 kHz waveforms; ``EmotionPredictor`` uses it for a model
path ending in ``.onnx``. It is kept apart from the exporter, which loads
model folders through ``EmotionPredictor``: the runtime needs neither.

onnx and onnxruntime are an optional extra: ``pip install -e ".[onnx]"``.

Authors
 * sercaf-toolkit developers 2026
"""

import json
import os

import numpy
import torch

from sercaf_toolkit.errors import UserError

SAMPLE_RATE = 16000
INPUTS = ("wavs", "lens")
OUTPUT = "log_probs"
# The second output of a dimensional or joint model's graph (its only one
# for a dimensional model): [batch, D] values on the corpus's scale.
DIMENSIONS_OUTPUT = "dimensions"
INSTALL_HINT = 'pip install -e ".[onnx]"'


def require(module):
    """Imports ``onnx`` or ``onnxruntime``, or fails in one line.

    Raises
    ------
    UserError
        When the package is not installed; the message says how to get it.

    Example
    -------
    >>> require("no_such_runtime")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    sercaf_toolkit.errors.UserError: no_such_runtime is not installed; ...
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError(
            f"{module} is not installed; ONNX export and ONNX models need "
            f"onnx and onnxruntime: {INSTALL_HINT}"
        ) from None


def is_onnx_path(path):
    """Whether a model path names an ONNX file (by its extension).

    Example
    -------
    >>> is_onnx_path("model.onnx"), is_onnx_path("results/inference")
    (True, False)
    """
    return str(path).lower().endswith(".onnx")


class OnnxModel:
    """An exported ONNX emotion model, run with onnxruntime.

    Arguments
    ---------
    path : str
        A file written by
        :func:`~sercaf_toolkit.deployment.onnx_export.export_onnx`.
    device : str
        ``"cpu"``, or ``"cuda"`` / ``"cuda:N"`` with onnxruntime-gpu.
    threads : int, optional
        Threads per operator (default: PyTorch's thread count, so that
        both runtimes use the same cores).

    Raises
    ------
    UserError
        If onnxruntime is missing, the file is missing or not a model
        this toolkit wrote, or the device is unavailable.
    """

    def __init__(self, path, device="cpu", threads=None):
        ort = require("onnxruntime")
        if not os.path.isfile(path):
            state = "is a folder" if os.path.isdir(path) else "does not exist"
            raise UserError(
                f"ONNX model {path} {state}; give a file written by "
                "sercaf export-onnx"
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        providers = ["CPUExecutionProvider"]
        if device != "cpu":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise UserError(
                    f"--device {device}: this onnxruntime has no CUDA "
                    "provider; use --device cpu or install onnxruntime-gpu"
                )
            index = device.split(":")[1] if ":" in device else "0"
            providers = [("CUDAExecutionProvider", {"device_id": index})]
        try:
            self.session = ort.InferenceSession(
                path, options, providers=providers
            )
        except Exception as error:  # onnxruntime has no common base class
            reason = " ".join(str(error).split())[:200]
            raise UserError(
                f"ONNX model {path} cannot be loaded ({reason}); export it "
                "again with sercaf export-onnx"
            ) from None
        metadata = self.session.get_modelmeta().custom_metadata_map
        names = [i.name for i in self.session.get_inputs()]
        if "labels" not in metadata or names != list(INPUTS):
            raise UserError(
                f"ONNX model {path} was not written by sercaf export-onnx "
                "(no labels in its metadata, or other inputs); export the "
                "model folder with sercaf export-onnx"
            )
        self.labels = json.loads(metadata["labels"])
        # A dimensional or joint model's dimensions and their scale; none
        # for a categorical model (and files exported before tasks).
        self.dimensions = json.loads(metadata.get("dimensions", "[]"))
        self.dimension_scale = (
            json.loads(metadata["dimension_scale"]) if self.dimensions else None
        )
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.metadata = dict(metadata)
        self.path = path
        # The speaker normalisation the model was trained with, if any
        # (see sercaf_toolkit.deployment.speakers).
        self.input_normalization = (
            json.loads(metadata["input_normalization"])
            if metadata.get("input_normalization")
            else None
        )

    def log_probabilities(self, wavs, lens):
        """``[B, classes]`` log-probabilities of a padded waveform batch.

        Arguments
        ---------
        wavs : torch.Tensor or numpy.ndarray
            ``[batch, samples]`` 16 kHz waveforms, padded at the end.
        lens : torch.Tensor or numpy.ndarray
            ``[batch]`` relative lengths.

        Returns
        -------
        torch.Tensor
            float32 log-probabilities.
        """
        log_probs, _ = self.outputs(wavs, lens)
        if log_probs is None:
            raise UserError(
                f"ONNX model {self.path} is dimensional "
                f"({', '.join(self.dimensions)}): it gives no "
                "log-probabilities; read its dimension values"
            )
        return log_probs

    def outputs(self, wavs, lens):
        """Log-probabilities and dimension values of a padded batch.

        Arguments
        ---------
        wavs, lens
            As for :meth:`log_probabilities`.

        Returns
        -------
        tuple
            ``([B, classes] log-probabilities, [B, D] dimension values on
            the corpus's scale)`` as float32 tensors; None for the one a
            model has not (a categorical model's dimensions, a dimensional
            model's log-probabilities).
        """
        feeds = {
            "wavs": numpy.ascontiguousarray(_numpy(wavs), dtype=numpy.float32),
            "lens": numpy.ascontiguousarray(_numpy(lens), dtype=numpy.float32),
        }
        results = dict(
            zip(self.output_names, self.session.run(self.output_names, feeds))
        )
        return tuple(
            torch.from_numpy(results[name]) if name in results else None
            for name in (OUTPUT, DIMENSIONS_OUTPUT)
        )


def _numpy(values):
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().numpy()
    return numpy.asarray(values)
