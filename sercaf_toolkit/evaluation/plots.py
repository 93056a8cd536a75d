"""Pictures: training curves, confusion matrices, reliability diagrams,
timelines, attention maps.

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
    # "tight" keeps what sits outside the axes (legends) in the picture.
    figure.savefig(path, dpi=110, bbox_inches="tight")
    _pyplot().close(figure)
    return path


def plot_training_curves(history, path, selected_epoch=None):
    """Loss, WA, UA, F1 and CCCs (those recorded) per epoch, train and valid.

    Arguments
    ---------
    history : dict or str
        ``{epoch: {"train": {...}, "valid": {...}}}`` (as SERBrain writes
        to ``history.json``), or the path of such a JSON file. A panel for
        ``F1`` is added when any epoch records it.
    path : str
        The PNG to write.
    selected_epoch : int, optional
        The epoch whose checkpoint was kept: a dashed line on every panel,
        with its validation value marked.

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
    >>> out = plot_training_curves(
    ...     history, tempfile.mktemp(suffix=".png"), selected_epoch=2
    ... )
    """
    if isinstance(history, str):
        with open(history, encoding="utf-8") as source:
            history = json.load(source)
    epochs = sorted(history, key=int)
    recorded = {
        key
        for e in epochs
        for stage in ("train", "valid")
        for key in history[e].get(stage, {})
    }
    keys = ["loss"]
    if "UA" in recorded or "CCC" not in recorded:
        keys += ["WA", "UA"] + (["F1"] if "F1" in recorded else [])
    # A dimensional or joint run: its mean CCC and each dimension's.
    keys += sorted(k for k in recorded if k.startswith("CCC"))
    plt = _pyplot()
    figure, axes = plt.subplots(
        1, len(keys), figsize=(4 * len(keys), 3.4), squeeze=False
    )
    for axis, key in zip(axes[0], keys):
        for stage, style in (("train", "-o"), ("valid", "-s")):
            values = [history[e].get(stage, {}).get(key) for e in epochs]
            points = [
                (int(e), v) for e, v in zip(epochs, values) if v is not None
            ]
            if points:
                axis.plot(*zip(*points), style, label=stage, markersize=3)
        if selected_epoch is not None:
            _mark_selected(axis, history, int(selected_epoch), key)
        axis.set_title(key)
        axis.set_xlabel("epoch")
        if key.startswith("CCC"):
            axis.set_ylim(-1, 1)
        elif key != "loss":
            axis.set_ylim(0, 1)
        axis.legend(fontsize=8, loc="best")
    return _save(figure, path)


def _mark_selected(axis, history, epoch, key):
    axis.axvline(
        epoch,
        color="0.35",
        linestyle="--",
        linewidth=1,
        label=f"selected (epoch {epoch})",
    )
    row = next((v for e, v in history.items() if int(e) == epoch), {})
    value = row.get("valid", {}).get(key)
    if value is not None:
        axis.plot([epoch], [value], "*", color="0.1", markersize=10)


def plot_confusion_matrix(confusion, labels, path, title=""):
    """A confusion matrix normalised by true class, with the counts.

    Each cell shows its fraction of the true class (rows sum to 1; the
    colour) and, below it, its count.

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

    Example
    -------
    >>> import tempfile
    >>> out = plot_confusion_matrix(
    ...     [[25, 5], [2, 18]], ["calm", "tense"],
    ...     tempfile.mktemp(suffix=".png"),
    ... )
    >>> open(out, "rb").read(4)
    b'\\x89PNG'
    """
    import numpy as np

    counts = np.asarray(confusion, dtype=float)
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = 1.2 + 0.8 * len(labels)
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
                f"{rates[i, j]:.2f}\n({int(round(counts[i, j]))})",
                ha="center",
                va="center",
                color="white" if rates[i, j] > 0.5 else "black",
                fontsize=8 if len(labels) <= 6 else 6,
            )
    figure.colorbar(
        image, ax=axis, label="fraction of true class (count below)"
    )
    axis.set_title(title)
    return _save(figure, path)


def plot_reliability_diagram(bins, path, title="test"):
    """Accuracy against confidence per bin, with the gap to the diagonal.

    The upper panel shows each bin's accuracy (bars) and the gap to its
    mean confidence (hatched, from the bar's top to the confidence); a
    calibrated model's bars reach the dashed diagonal. The lower panel
    shows how many predictions each bin holds, so that a large gap in a
    nearly empty bin is read as the noise it is.

    Arguments
    ---------
    bins : dict
        ``edges``, ``count``, ``accuracy``, ``confidence`` and ``ECE``, as
        :func:`~sercaf_toolkit.evaluation.calibration.reliability_bins`
        gives them.
    path : str
        The PNG to write.
    title : str
        Title of the picture (the ECE is added to it).

    Example
    -------
    >>> import tempfile
    >>> from sercaf_toolkit.evaluation.calibration import reliability_bins
    >>> bins = reliability_bins([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7]],
    ...                         [0, 1, 1])
    >>> out = plot_reliability_diagram(bins, tempfile.mktemp(suffix=".png"))
    >>> open(out, "rb").read(4)
    b'\\x89PNG'
    """
    import numpy as np
    from matplotlib.ticker import MaxNLocator

    edges = np.asarray(bins["edges"], dtype=float)
    width = np.diff(edges)
    filled = [i for i, count in enumerate(bins["count"]) if count]
    accuracy = np.array([bins["accuracy"][i] for i in filled], dtype=float)
    confidence = np.array([bins["confidence"][i] for i in filled], dtype=float)
    plt = _pyplot()
    figure, (axis, counts) = plt.subplots(
        2,
        1,
        figsize=(4.6, 5.2),
        sharex=True,
        gridspec_kw={"height_ratios": [3, 1]},
    )
    axis.plot([0, 1], [0, 1], "--", color="0.45", label="calibrated")
    axis.bar(
        edges[filled],
        accuracy,
        width=width[filled],
        align="edge",
        color="tab:blue",
        edgecolor="black",
        linewidth=0.6,
        label="accuracy",
    )
    axis.bar(
        edges[filled],
        confidence - accuracy,
        bottom=accuracy,
        width=width[filled],
        align="edge",
        # Hatched only: over an accuracy bar (an under-confident bin) the
        # gap stays readable instead of mixing into another colour.
        fill=False,
        hatch="//",
        edgecolor="tab:red",
        linewidth=0.8,
        label="gap to mean confidence",
    )
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1)
    axis.set_ylabel("accuracy")
    axis.legend(fontsize=8, loc="upper left")
    ece = bins["ECE"]
    axis.set_title(f"{title}, ECE {ece:.3f}" if ece is not None else title)
    counts.bar(
        edges[:-1],
        bins["count"],
        width=width,
        align="edge",
        color="0.6",
        edgecolor="black",
        linewidth=0.6,
    )
    counts.set_xlabel("confidence (largest probability)")
    counts.set_ylabel("predictions")
    counts.yaxis.set_major_locator(MaxNLocator(integer=True))
    return _save(figure, path)


# Where the band of merged segments sits, below the probabilities.
_BAND = (-0.2, 0.14)


def plot_timelines(
    windows_by_path,
    labels,
    path,
    segments_by_path=None,
    dimensions=(),
    scale=None,
):
    """Class probabilities (and dimensions) over time, per recording.

    Arguments
    ---------
    windows_by_path : dict
        Recording -> per-window records (``start``, ``end``,
        ``prob_<label>``, and each of ``dimensions``), as
        ``EmotionPredictor.predict`` reports them.
    labels : list of str
        Class names (none for a dimensional model).
    path : str
        The PNG to write.
    segments_by_path : dict, optional
        Recording -> its merged timeline records (``start``, ``end``,
        ``label``), drawn as a band of labelled, coloured segments below
        the curves.
    dimensions : list of str
        A dimensional or joint model's dimensions: drawn in a panel of
        their own below each recording's probabilities, on ``scale``.
    scale : tuple of float, optional
        ``(low, high)`` of the dimensions (default: the values' range).

    Raises
    ------
    ValueError
        When ``windows_by_path`` is empty: there is nothing to draw.

    Example
    -------
    >>> import tempfile
    >>> windows = [
    ...     {"start": 0.0, "end": 4.0, "prob_calm": 0.9, "prob_tense": 0.1},
    ...     {"start": 2.0, "end": 6.0, "prob_calm": 0.2, "prob_tense": 0.8},
    ... ]
    >>> segments = [
    ...     {"start": 0.0, "end": 3.0, "label": "calm"},
    ...     {"start": 3.0, "end": 6.0, "label": "tense"},
    ... ]
    >>> out = plot_timelines(
    ...     {"a.wav": windows}, ["calm", "tense"],
    ...     tempfile.mktemp(suffix=".png"), {"a.wav": segments},
    ... )
    >>> open(out, "rb").read(4)
    b'\\x89PNG'
    >>> values = [
    ...     {"start": 0.0, "end": 4.0, "arousal": 2.1, "valence": 3.0},
    ...     {"start": 2.0, "end": 6.0, "arousal": 3.9, "valence": 2.5},
    ... ]
    >>> out = plot_timelines(
    ...     {"a.wav": values}, [], tempfile.mktemp(suffix=".png"),
    ...     dimensions=["arousal", "valence"], scale=(1, 5),
    ... )
    >>> open(out, "rb").read(4)
    b'\\x89PNG'
    """
    items = list(windows_by_path.items())
    if not items:
        raise ValueError("no recording long enough for a timeline to plot")
    segments_by_path = segments_by_path or {}
    colours = {label: f"C{index % 10}" for index, label in enumerate(labels)}
    # One panel of probabilities per recording (a classifier's), then one
    # of dimensions (a regressor's): a joint model gets both.
    kinds = (["probability"] if labels else []) + (
        ["dimension"] if dimensions else []
    )
    plt = _pyplot()
    figure, axes = plt.subplots(
        len(items) * len(kinds),
        1,
        figsize=(10, 2.8 * len(items) * len(kinds)),
        squeeze=False,
    )
    panels = iter(axes[:, 0])
    for name, windows in items:
        centres = [(w["start"] + w["end"]) / 2 for w in windows]
        for kind in kinds:
            axis = next(panels)
            axis.set_title(os.path.basename(name), fontsize=9)
            if kind == "dimension":
                _draw_dimensions(axis, centres, windows, dimensions, scale)
                continue
            for label in labels:
                axis.plot(
                    centres,
                    [w[f"prob_{label}"] for w in windows],
                    label=label,
                    color=colours[label],
                )
            axis.set_ylim(0, 1)
            segments = segments_by_path.get(name)
            if segments:
                _draw_band(axis, segments, colours)
            axis.set_yticks([0, 0.5, 1])
            axis.set_ylabel("probability")
    axes[-1, 0].set_xlabel("time (s, window centre)")
    # Outside, right of the top panels: the legend never hides a curve.
    for index, kind in enumerate(kinds):
        axes[index, 0].legend(
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            borderaxespad=0,
            fontsize=8,
            title="class" if kind == "probability" else "dimension",
            title_fontsize=8,
        )
    return _save(figure, path)


def _draw_dimensions(axis, centres, windows, dimensions, scale):
    """Each dimension's values over time, on the corpus's scale."""
    for index, name in enumerate(dimensions):
        axis.plot(
            centres,
            [w[name] for w in windows],
            label=name,
            color=f"C{index % 10}",
            marker="o",
            markersize=3,
        )
    if scale is not None:
        axis.set_ylim(*scale)
    axis.set_ylabel("value")


def _draw_band(axis, segments, colours):
    """The merged segments as a labelled strip below the curves."""
    from matplotlib.transforms import blended_transform_factory

    bottom, height = _BAND
    duration = max(s["end"] for s in segments) - min(
        s["start"] for s in segments
    )
    for segment in segments:
        width = segment["end"] - segment["start"]
        axis.broken_barh(
            [(segment["start"], width)],
            (bottom, height),
            facecolors=colours.get(segment["label"], "0.5"),
            edgecolor="white",
            linewidth=0.8,
            label="_segment",
        )
        # A name only where it fits; the colour still tells the rest.
        if duration and width / duration >= 0.04:
            axis.text(
                segment["start"] + width / 2,
                bottom + height / 2,
                segment["label"],
                ha="center",
                va="center",
                fontsize=7,
                color="white",
                clip_on=True,
            )
    axis.set_ylim(bottom - 0.02, 1.02)
    axis.text(
        -0.01,
        bottom + height / 2,
        "merged",
        transform=blended_transform_factory(axis.transAxes, axis.transData),
        ha="right",
        va="center",
        fontsize=8,
    )


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
