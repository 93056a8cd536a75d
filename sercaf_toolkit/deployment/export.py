"""Export of a trained model as a folder that EncoderClassifier loads.

The folder holds ``hyperparams.yaml`` (the recipe's own ``model`` definition
with every SSL stream built from its config instead of a hub id or local
path), ``embedding_model.ckpt`` (all weights, SSL included) and
``label_encoder.ckpt`` (the labels, in SpeechBrain's text format), for a
model trained on speaker-normalised audio ``input_normalization.json``
(what :mod:`sercaf_toolkit.deployment.speakers` needs to apply it at
inference), and ``checksums.json`` (the size and SHA-256 of the others,
written last: ``EmotionPredictor`` and ``sercaf predict`` refuse a
folder that does not match it).
SpeechBrain's ``EncoderClassifier.from_hparams(source=folder, savedir=...)``
loads it offline, from any working directory, and its ``classify_file`` /
``classify_batch`` give the trained model's labels (of a joint model, its
classifier's; a dimensional model's ``classifier`` is its
:class:`~sercaf_toolkit.lobes.model.DimensionHead`, whose values are
the scores ``classify_batch`` returns: see docs/dimensional.md).

A ``hyperparams.yaml`` can run arbitrary code when loaded: load only model
folders you trust.

Authors
 * sercaf-toolkit developers 2026
"""

import io
import json
import os

import ruamel.yaml
import torch
from hyperpyyaml import resolve_references

from sercaf_toolkit.deployment.speakers import RECORD_FILE
from sercaf_toolkit.hparams import compose_hparams, drop_comments, only_chosen
from sercaf_toolkit.integrity import write_checksums

_INFERENCE_PART = """
# SpeechBrain's EncoderClassifier calls compute_features(wavs), then
# mean_var_norm(feats, wav_lens), then embedding_model(feats, wav_lens):
# the model takes raw waveforms, so the first two pass them through.
compute_features: !new:{compute_features}
mean_var_norm: !new:sercaf_toolkit.lobes.PassThrough
classifier: !ref <embedding_model.{head}>
label_encoder: !apply:sercaf_toolkit.data.label_encoder_of_size [{n_labels}]

modules:
    compute_features: !ref <compute_features>
    mean_var_norm: !ref <mean_var_norm>
    embedding_model: !ref <embedding_model>
    classifier: !ref <classifier>

# No `paths:` on purpose: SpeechBrain reads a relative path against the
# working directory (and a hub id from the hub), while a loadable without
# a path is <name>.ckpt in the model folder itself.
pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        embedding_model: !ref <embedding_model>
        label_encoder: !ref <label_encoder>
"""


EXPORTED_FILES = (
    "hyperparams.yaml",
    "embedding_model.ckpt",
    "label_encoder.ckpt",
)
# What a folder's compute_features is: a pass-through, or, for a model
# trained on speaker-normalised audio, a guard that refuses raw audio in
# SpeechBrain's EncoderClassifier (EmotionPredictor normalises first).
_RAW_INPUT = "sercaf_toolkit.lobes.PassThrough"
_NORMALIZED_INPUT = "sercaf_toolkit.deployment.speakers.SpeakerNormalizedInput"


def run_input_normalization(output_folder):
    """The speaker normalisation a run's data was prepared with, or None.

    Reads the ``input_normalization`` that ``prepare_fold`` writes into
    the run's ``split_info.json``.

    Example
    -------
    >>> import tempfile
    >>> run_input_normalization(tempfile.mkdtemp()) is None
    True
    """
    path = os.path.join(output_folder, "split_info.json")
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as source:
        return json.load(source).get("input_normalization") or None


def export_model(
    hparams_file,
    overrides,
    model,
    label_encoder,
    folder,
    model_key="model",
    input_normalization=None,
):
    """Writes a trained model as a self-contained inference folder.

    Arguments
    ---------
    hparams_file : str
        The recipe's YAML file the model was built from (with the layers it
        extends).
    overrides : str or dict
        The overrides it was loaded with.
    model : torch.nn.Module
        The trained model (its weights are saved as they are now).
    label_encoder : speechbrain.dataio.encoder.CategoricalEncoder
        The fitted label encoder.
    folder : str
        The folder to write (created if needed).
    model_key : str
        The key of the model in the recipe's YAML.
    input_normalization : dict, optional
        The speaker normalisation the model was trained with (see
        :func:`sercaf_toolkit.corpora.speaker_normalization.training_record`):
        written to ``input_normalization.json``, and the folder refuses
        raw audio. None: a model trained on raw audio.

    Returns
    -------
    str
        ``folder``.
    """
    resolved = resolve_references(compose_hparams(hparams_file), overrides)
    round_trip = ruamel.yaml.YAML()
    tree = round_trip.load(resolved.getvalue())
    if model_key not in tree:
        raise KeyError(f"{hparams_file} has no `{model_key}` entry")
    model_node = only_chosen(tree[model_key])
    stream_nodes = model_node.get("streams")
    if not isinstance(stream_nodes, list) or len(stream_nodes) != len(
        model.streams
    ):
        raise ValueError(
            f"{hparams_file}: `{model_key}` does not list the model's "
            f"{len(model.streams)} streams"
        )
    # A stream says what its exported definition needs (an SSL stream: its
    # architecture, the HF config, instead of a hub id or local folder);
    # weights come with the rest from embedding_model.ckpt, so loading
    # needs neither the original folder nor the hub.
    for node, stream in zip(stream_nodes, model.streams):
        if hasattr(stream, "export_arguments"):
            node.update(stream.export_arguments())
    for head in ("classifier", "regressor", "functionals"):
        # A categorical model's `regressor: null` (a dimensional one's
        # classifier, a model's `functionals: null`) is left out: the
        # export of a categorical model is what it was before tasks and
        # functionals existed.
        if head in model_node and model_node[head] is None:
            del model_node[head]
    drop_comments(model_node, block_style=True)
    model_part = io.StringIO()
    round_trip.dump({"embedding_model": model_node}, model_part)

    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "hyperparams.yaml"), "w") as out:
        out.write(
            "# Exported by sercaf-toolkit from "
            + os.path.basename(hparams_file)
        )
        out.write("\n# Load only model folders you trust: YAML can run code.\n")
        out.write(model_part.getvalue())
        out.write(
            _INFERENCE_PART.format(
                n_labels=len(label_encoder),
                # EncoderClassifier needs a classifier: a dimensional
                # model's is its regressor (scores = the dimensions).
                head="classifier"
                if getattr(model, "classifier", None) is not None
                else "regressor",
                compute_features=_NORMALIZED_INPUT
                if input_normalization
                else _RAW_INPUT,
            )
        )
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save(state, os.path.join(folder, "embedding_model.ckpt"))
    label_encoder.save(os.path.join(folder, "label_encoder.ckpt"))
    files = EXPORTED_FILES
    record_path = os.path.join(folder, RECORD_FILE)
    if input_normalization:
        with open(record_path, "w", encoding="utf-8") as out:
            json.dump(input_normalization, out, indent=1)
        files += (RECORD_FILE,)
    elif os.path.exists(record_path):  # a folder exported again, raw now
        os.remove(record_path)
    write_checksums(folder, files)
    return folder
