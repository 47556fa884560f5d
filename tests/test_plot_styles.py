"""One colour and marker per method in every plot of a run, and the same in every run.

The plots are drawn from the fixture run (tests/fixtures, as ``test_report.py``) and read back from
the figures matplotlib drew: the legend's lines (``pareto.png``, ``budget.png``), the labels and rank
markers of the critical-difference diagram (``ranks.png``), the mean markers of the paired differences
(``comparison.png``).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from matplotlib import colors
from matplotlib.figure import Figure
from matplotlib.markers import MarkerStyle

from suite.report import write_reports
from suite.report.plots import MARKERS, Style, method_style, row_styles

FIXTURES = Path(__file__).resolve().parent / "fixtures"
METHOD_NAMES = ("Fine-tune", "LoRA(r=8)", "BitFit", "AutoPEFT", "BIPEFT", "S3Delta")  # the fixture's, as printed


@pytest.fixture
def figures(tmp_path, monkeypatch) -> dict[str, Figure]:
    """Every figure ``write_reports`` saves, by file name."""
    run = tmp_path / "run"
    shutil.copytree(FIXTURES / "records", run / "records")
    shutil.copytree(FIXTURES / "predictions", run / "predictions")
    saved: dict[str, Figure] = {}
    savefig = Figure.savefig

    def keep(fig, path, *args, **kwargs):
        saved[Path(path).name] = fig
        return savefig(fig, path, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep)
    write_reports(run, reference="bipeft")
    return saved


def method_of(label: str) -> str:
    return next(m for m in METHOD_NAMES if label.startswith(m))


def marker_of(collection) -> str:
    """The marker a scatter drew, by its path."""
    path = collection.get_paths()[0]
    for marker in MARKERS:
        style = MarkerStyle(marker)
        expected = style.get_path().transformed(style.get_transform())
        if path.vertices.shape == expected.vertices.shape and np.allclose(path.vertices, expected.vertices):
            return marker
    raise AssertionError("a marker of no method")


def legend_styles(fig: Figure) -> set[tuple[str, str, str]]:
    """(method, colour, marker) of every legend entry (a line, or an error bar's data line)."""
    out = set()
    for ax in fig.axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            line = handle.lines[0] if hasattr(handle, "lines") else handle
            if line.get_marker() not in ("None", None, ""):  # full fine-tuning's dashed level has none
                out.add((method_of(label), colors.to_hex(line.get_color()), line.get_marker()))
    return out


def ranks_styles(fig: Figure) -> set[tuple[str, str, str]]:
    """(method, colour, marker) of the diagram: each label's colour, and the rank marker of that colour at its rank."""
    ax = fig.axes[0]
    out = set()
    for text in ax.texts:
        rank = re.search(r"\((\d+\.\d+)\)", text.get_text())
        label = text.get_text().replace(rank.group(0), "").strip()
        colour = colors.to_hex(text.get_color())
        marks = [c for c in ax.collections if len(c.get_offsets()) == 1 and c.get_sizes()[0] > 0
                 and abs(c.get_offsets()[0][0] - float(rank.group(1))) < 0.006
                 and colors.to_hex(c.get_edgecolor()[0]) == colour]
        assert len(marks) == 1, f"no rank marker of {label}'s colour at its rank"
        out.add((method_of(label), colour, marker_of(marks[0])))
    return out


def comparison_styles(fig: Figure) -> set[tuple[str, str, str]]:
    """(method, colour, marker) of each row's mean marker in the paired-differences plot."""
    out = set()
    for ax in fig.axes:
        labels = {round(t): label.get_text() for t, label in zip(ax.get_yticks(), ax.get_yticklabels())}
        for c in ax.collections:
            if c.get_sizes()[0] == 50:  # a mean marker (the per-seed dots are small and black)
                y = round(float(c.get_offsets()[0][1]))
                out.add((method_of(labels[y]), colors.to_hex(c.get_edgecolor()[0]), marker_of(c)))
    return out


def test_a_method_has_one_colour_and_marker_in_every_plot(figures):
    assert {"pareto.png", "budget.png", "ranks.png", "comparison.png"} <= set(figures)
    drawn = (legend_styles(figures["pareto.png"]) | legend_styles(figures["budget.png"])
             | ranks_styles(figures["ranks.png"]) | comparison_styles(figures["comparison.png"]))
    by_method: dict[str, set] = {}
    for method, colour, marker in drawn:
        by_method.setdefault(method, set()).add((colour, marker))
    assert set(by_method) == set(METHOD_NAMES)
    assert all(len(styles) == 1 for styles in by_method.values()), by_method  # one style a method
    pairs = [next(iter(s)) for s in by_method.values()]
    assert len(set(pairs)) == len(pairs)  # and no two methods alike
    bipeft = method_style("bipeft")
    assert by_method["BIPEFT"] == {(bipeft.colour, bipeft.marker)}


def test_styles_do_not_depend_on_the_run():
    from methods import METHODS

    registered = {name: method_style(name) for name in METHODS.names()}
    assert len({(s.colour, s.marker) for s in registered.values()}) == len(registered)  # every method its own
    run_a = [("m", "lora", "manual", "", "s2", None, None), ("m", "bipeft", "one-shot", "", "s2", 1e-3, 22)]
    run_b = [("m", "bitfit", "manual", "", "s2", None, None), ("m", "s3delta", "one-shot", "", "s2", 1e-3, 22),
             ("m", "bipeft", "one-shot", "", "s1", 1e-3, 22), ("m", "bipeft", "one-shot", "", "s2", 1e-3, 22),
             ("m", "lora", "manual", "", "s2", None, None)]
    a, b = row_styles(run_a), row_styles(run_b)
    assert a[run_a[1][:5]] == b[run_b[2][:5]] == registered["bipeft"]  # BIPEFT alike, whoever else ran
    assert a[run_a[0][:5]] == b[run_b[4][:5]] == registered["lora"]
    second = b[run_b[3][:5]]  # BIPEFT's second row in one run (another space): its colour, hollow, dashed
    assert (second.colour, second.marker, second.variant) == (registered["bipeft"].colour, registered["bipeft"].marker, 1)
    assert second.face == "white" and second.linestyle == "--"
    unknown = row_styles([("m", "zz-plugin", "one-shot", "", "s2", None, None)])
    assert isinstance(next(iter(unknown.values())), Style)


def test_each_placement_heat_map_is_shaded_in_its_methods_colour(figures):
    """placements.png: a panel per searched row, titled and shaded (white to full) in its method's colour."""
    panels = [ax for ax in figures["placements.png"].axes if ax.get_visible()]
    assert {method_of(ax.get_title()) for ax in panels} == {"AutoPEFT", "BIPEFT", "S3Delta"}  # searched rows only
    assert len(panels) == 5  # BIPEFT and S3Delta at two budgets, AutoPEFT at one
    names = {"AutoPEFT": "autopeft", "BIPEFT": "bipeft", "S3Delta": "s3delta"}
    for ax in panels:
        colour = method_style(names[method_of(ax.get_title())]).colour
        image = ax.get_images()[0]
        assert colors.to_hex(ax.title.get_color()) == colour
        assert colors.to_hex(image.cmap(1.0)) == colour and colors.to_hex(image.cmap(0.0)) == "#ffffff"
