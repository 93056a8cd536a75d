"""Pictures: what each figure shows, checked on the matplotlib objects."""

import pytest
from matplotlib.colors import to_rgba

from sercaf_toolkit.evaluation import plots

LABELS = ["neutral", "happy", "angry", "sad"]


@pytest.fixture
def figures(monkeypatch):
    """The figures the plot functions build, kept for inspection."""
    kept = []
    save = plots._save

    def keep(figure, path):
        figure.canvas.draw()  # lay out first, as saving would
        kept.append(figure)
        return save(figure, path)

    monkeypatch.setattr(plots, "_save", keep)
    return kept


def history(with_f1=True):
    """Ten epochs as SERBrain's history.json holds them (string keys)."""
    rows = {}
    for epoch in range(1, 11):
        rows[str(epoch)] = {
            stage: {
                "loss": 1.0 / epoch + shift,
                "WA": 0.3 + 0.04 * epoch - shift,
                "UA": 0.3 + 0.03 * epoch - shift,
                **({"F1": 0.25 + 0.03 * epoch - shift} if with_f1 else {}),
            }
            for stage, shift in (("train", 0.0), ("valid", 0.05))
        }
    return rows


def test_training_curves_mark_the_selected_epoch_and_draw_f1(figures, tmp_path):
    plots.plot_training_curves(
        history(), str(tmp_path / "curves.png"), selected_epoch=7
    )
    (figure,) = figures
    axes = figure.axes
    assert [axis.get_title() for axis in axes] == ["loss", "WA", "UA", "F1"]
    for axis in axes:
        lines = {line.get_label(): line for line in axis.get_lines()}
        assert set(lines) >= {"train", "valid", "selected (epoch 7)"}
        assert list(lines["selected (epoch 7)"].get_xdata()) == [7, 7]
    f1 = {line.get_label(): line for line in axes[3].get_lines()}
    assert list(f1["valid"].get_ydata()) == pytest.approx(
        [0.2 + 0.03 * epoch for epoch in range(1, 11)]
    )


def test_training_curves_as_before_without_f1_or_selection(figures, tmp_path):
    path = tmp_path / "curves.png"
    assert plots.plot_training_curves(history(False), str(path)) == str(path)
    (figure,) = figures
    assert [axis.get_title() for axis in figure.axes] == ["loss", "WA", "UA"]
    for axis in figure.axes:
        assert not [
            line
            for line in axis.get_lines()
            if line.get_label().startswith("selected")
        ]


def test_confusion_matrix_shows_counts_beside_fractions(figures, tmp_path):
    confusion = [[25, 5], [2, 18]]
    plots.plot_confusion_matrix(
        confusion, ["calm", "tense"], str(tmp_path / "cm.png")
    )
    texts = {text.get_text() for text in figures[0].axes[0].texts}
    assert texts == {"0.83\n(25)", "0.17\n(5)", "0.10\n(2)", "0.90\n(18)"}


def windows_and_segments():
    windows = []
    for index in range(14):
        probs = [0.1, 0.1, 0.1, 0.1]
        probs[0 if index < 5 else 2 if index < 10 else 3] = 0.7
        windows.append(
            {
                "start": 2.0 * index,
                "end": 2.0 * index + 4,
                **{f"prob_{label}": p for label, p in zip(LABELS, probs)},
            }
        )
    segments = [
        {"start": 0.0, "end": 11.0, "label": "neutral"},
        {"start": 11.0, "end": 21.0, "label": "angry"},
        {"start": 21.0, "end": 30.0, "label": "sad"},
    ]
    return windows, segments


def test_timeline_legend_outside_and_segments_as_a_labelled_band(
    figures, tmp_path
):
    windows, segments = windows_and_segments()
    plots.plot_timelines(
        {"a/long.wav": windows, "b/other.wav": windows},
        LABELS,
        str(tmp_path / "timeline.png"),
        segments_by_path={"a/long.wav": segments},
    )
    (figure,) = figures
    top, bottom = figure.axes
    legend = top.get_legend()
    assert [text.get_text() for text in legend.get_texts()] == LABELS
    # Right of the panel: it cannot hide a curve.
    assert legend.get_window_extent().x0 >= top.get_window_extent().x1
    band = top.collections
    assert len(band) == len(segments)
    for bar, segment in zip(band, segments):
        (path,) = bar.get_paths()
        xs = path.vertices[:, 0]
        assert (xs.min(), xs.max()) == pytest.approx(
            (segment["start"], segment["end"])
        )
        assert path.vertices[:, 1].max() < 0  # below the probabilities
    names = [text.get_text() for text in top.texts]
    assert names == ["neutral", "angry", "sad", "merged"]
    # Each bar has its class's colour, as the class's curve does.
    curves = {line.get_label(): line.get_color() for line in top.get_lines()}
    for bar, segment in zip(band, segments):
        assert tuple(bar.get_facecolor()[0]) == pytest.approx(
            to_rgba(curves[segment["label"]])
        )
    assert not bottom.collections  # no segments given: no band
    assert bottom.get_ylim() == (0, 1)


def test_timeline_without_segments_keeps_the_old_call(figures, tmp_path):
    windows, _ = windows_and_segments()
    path = str(tmp_path / "timeline.png")
    assert plots.plot_timelines({"a.wav": windows}, LABELS, path) == path
    with pytest.raises(ValueError, match="no recording"):
        plots.plot_timelines({}, LABELS, path)
