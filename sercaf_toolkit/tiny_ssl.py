"""Tiny wav2vec2 / HuBERT / WavLM models built from a config, offline.

No model hub is reachable from tests, CI or the embedded demo, so they build
a small randomly initialised model with the same architecture as the real
checkpoints, save it with its feature extractor the way the hub stores it,
and load that folder as the SSL source.

Authors
 * sercaf-toolkit developers 2026
"""

import os
import shutil

import torch
import transformers

# Model classes by the ``model_type`` a config carries; HuBERT and WavLM
# share wav2vec2's feature extractor and CNN front end.
_MODELS = {
    "wav2vec2": (transformers.Wav2Vec2Config, transformers.Wav2Vec2Model),
    "hubert": (transformers.HubertConfig, transformers.HubertModel),
    "wavlm": (transformers.WavLMConfig, transformers.WavLMModel),
}


def build_tiny_ssl_model(
    folder,
    model_type="wav2vec2",
    hidden_size=32,
    num_hidden_layers=2,
    feat_extract_norm="group",
    seed=0,
):
    """Writes a tiny pre-trained-style SSL model folder and returns its path.

    The CNN front end has total stride 320 like the base models (one frame
    per 20 ms at 16 kHz) but few channels, so a forward pass takes
    milliseconds on a CPU.

    Arguments
    ---------
    folder : str
        Where to write ``config.json``, the weights and
        ``preprocessor_config.json``. Reused as it is when already complete.
    model_type : str
        ``"wav2vec2"``, ``"hubert"`` or ``"wavlm"``.
    hidden_size : int
        Transformer width (the stream's output width).
    num_hidden_layers : int
        Number of transformer layers.
    feat_extract_norm : str
        ``"group"`` (as in the base models) or ``"layer"`` (as in large).
    seed : int
        Seed of the random initialisation, so the same call writes the
        same model.

    Returns
    -------
    str
        ``folder``, usable as ``source`` of
        :class:`sercaf_toolkit.lobes.ssl.SSLStream`.

    Example
    -------
    >>> import tempfile
    >>> folder = build_tiny_ssl_model(tempfile.mkdtemp(), "hubert")
    >>> sorted(os.listdir(folder))
    ['config.json', 'model.safetensors', 'preprocessor_config.json']
    """
    if model_type not in _MODELS:
        raise ValueError(
            f"unknown model_type {model_type!r}; choose from {sorted(_MODELS)}"
        )
    if os.path.exists(os.path.join(folder, "model.safetensors")):
        return folder
    config_class, model_class = _MODELS[model_type]
    config = config_class(
        hidden_size=hidden_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden_size,
        conv_dim=(16, 16, 16, 16, 16, 16, 16),
        feat_extract_norm=feat_extract_norm,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        do_stable_layer_norm=feat_extract_norm == "layer",
        num_buckets=16,  # WavLM's relative position buckets
        max_bucket_distance=64,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = model_class(config)
    # Written aside, then renamed: processes building the same folder at
    # once (DDP ranks loading one YAML file) never read a half-written one.
    partial = f"{folder.rstrip(os.sep)}.partial-{os.getpid()}"
    model.save_pretrained(partial)
    transformers.Wav2Vec2FeatureExtractor(
        feature_size=1,
        sampling_rate=16000,
        padding_value=0.0,
        do_normalize=True,
        return_attention_mask=True,
    ).save_pretrained(partial)
    try:
        os.rename(partial, folder)
    except OSError:  # another process finished first: keep its folder
        shutil.rmtree(partial, ignore_errors=True)
        if not os.path.exists(os.path.join(folder, "model.safetensors")):
            raise
    return folder
