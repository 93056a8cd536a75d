"""Pictures: training curves, confusion matrices, timelines, attention maps.

All functions write a PNG with matplotlib's non-interactive backend and
return its path.

Authors
 * sercaf-toolkit developers 2026
"""

import json
import os


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure, path):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    _pyplot().close(figure)
    return path


def plot_training_curves(history, path):
    """Loss, WA and UA per epoch, training and validation.

    Arguments
    ---------
    history : dict or str
        ``{epoch: {"train": {...}, "valid": {...}}}`` (as SERBrain writes
        to ``history.json``), or the path of such a JSON file.
    path : str
        The PNG to write.

    Example
    -------
    >>> import tempfile
    >>> history = {1: {"train": {"loss": 1.2, "WA": 0.4, "UA": 0.4},
    ...                "valid": {"loss": 1.0, "WA": 0.5, "UA": 0.45}},
    ...            2: {"train": {"loss": 0.8, "WA": 0.7, "UA": 0.68},
    ...                "valid": {"loss": 0.9, "WA": 0.6, "UA": 0.55}}}
    >>> out = plot_training_curves(history, tempfile.mktemp(suffix=".png"))
    >>> open(out, "rb").read(4)
    b'\\x89PNG'
    """
    if isinstance(history, str):
        with open(history, encoding="utf-8") as source:
            history = json.load(source)
    epochs = sorted(history, key=int)
    plt = _pyplot()
    figure, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for axis, key in zip(axes, ("loss", "WA", "UA")):
        for stage, style in (("train", "-o"), ("valid", "-s")):
            values = [history[e].get(stage, {}).get(key) for e in epochs]
            points = [
                (int(e), v) for e, v in zip(epochs, values) if v is not None
            ]
            if points:
                axis.plot(*zip(*points), style, label=stage, markersize=3)
        axis.set_title(key)
        axis.set_xlabel("epoch")
        if key != "loss":
            axis.set_ylim(0, 1)
        axis.legend()
    return _save(figure, path)


def plot_confusion_matrix(confusion, labels, path, title=""):
    """A confusion matrix normalised by true class (rows sum to 1).

    Arguments
    ---------
    confusion : list of list of int
        Counts, rows true class, columns predicted class.
    labels : list of str
        Class names.
    path : str
        The PNG to write.
    title : str
        Title of the picture.
    """
    import numpy as np

    counts = np.asarray(confusion, dtype=float)
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = 1.2 + 0.7 * len(labels)
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(size + 1.5, size))
    image = axis.imshow(rates, vmin=0, vmax=1, cmap="Blues")
    axis.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    axis.set_yticks(range(len(labels)), labels)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    for i in range(len(labels)):
        for j in range(len(labels)):
            axis.text(
                j,
                i,
                f"{rates[i, j]:.2f}",
                ha="center",
                va="center",
                color="white" if rates[i, j] > 0.5 else "black",
                fontsize=8,
            )
    figure.colorbar(image, ax=axis, label="fraction of true class")
    axis.set_title(title)
    return _save(figure, path)


def plot_timelines(windows_by_path, labels, path):
    """Class probabilities over time, one panel per recording.

    Arguments
    ---------
    windows_by_path : dict
        Recording -> per-window records (``start``, ``end``,
        ``prob_<label>``), as ``EmotionPredictor.predict`` reports them.
    labels : list of str
        Class names.
    path : str
        The PNG to write.
    """
    items = list(windows_by_path.items())
    if not items:
        raise ValueError("no recording long enough for a timeline to plot")
    plt = _pyplot()
    figure, axes = plt.subplots(
        len(items), 1, figsize=(10, 2.6 * len(items)), squeeze=False
    )
    for axis, (name, windows) in zip(axes[:, 0], items):
        centres = [(w["start"] + w["end"]) / 2 for w in windows]
        for label in labels:
            axis.plot(
                centres, [w[f"prob_{label}"] for w in windows], label=label
            )
        axis.set_ylim(0, 1)
        axis.set_ylabel("probability")
        axis.set_title(os.path.basename(name), fontsize=9)
    axes[-1, 0].set_xlabel("time (s, window centre)")
    axes[0, 0].legend(loc="upper right", ncol=min(len(labels), 4), fontsize=8)
    return _save(figure, path)


def plot_attention_maps(maps, frame_seconds, names, path, title=""):
    """Cross-attention maps of one utterance, one panel per stream.

    Arguments
    ---------
    maps : list of numpy.ndarray
        Per stream ``i``, ``[T_i, sum of the other streams' T]`` weights
        (valid frames only).
    frame_seconds : list of float
        Frame shift of each stream, in seconds (for the axes).
    names : list of str
        Stream names.
    path : str
        The PNG to write.
    title : str
        Title of the picture.
    """
    plt = _pyplot()
    figure, axes = plt.subplots(
        1, len(maps), figsize=(5.2 * len(maps), 4.4), squeeze=False
    )
    for index, (axis, weights) in enumerate(zip(axes[0], maps)):
        others = [n for j, n in enumerate(names) if j != index]
        if len(maps) == 2:  # keys: the other stream's frames, in seconds
            width = weights.shape[1] * frame_seconds[1 - index]
            xlabel = f"{others[0]} key frame time (s)"
        else:  # keys: all other streams' frames, one after another
            width = weights.shape[1]
            xlabel = f"key frame index ({', '.join(others)})"
        height = weights.shape[0] * frame_seconds[index]
        image = axis.imshow(
            weights,
            aspect="auto",
            origin="lower",
            cmap="magma",
            extent=(0, width, 0, height),
        )
        axis.set_ylabel(f"{names[index]} query frame time (s)")
        axis.set_xlabel(xlabel)
        axis.set_title(
            f"{names[index]} attends to {', '.join(others)}", fontsize=9
        )
        figure.colorbar(image, ax=axis, label="attention weight")
    if title:
        figure.suptitle(title)
    return _save(figure, path)
