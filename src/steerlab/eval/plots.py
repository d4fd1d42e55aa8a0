"""Plots people would rather look at than read; PNG written atomically, never shown."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..base.files import atomic_path  # noqa: E402


def _save(fig: object, path: str | Path) -> Path:
    path = Path(path)
    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:  # the temporary name keeps the suffix savefig reads the format from
            fig.savefig(tmp, dpi=120)
    finally:
        plt.close(fig)
    return path


def _yerr(values: Sequence[float], lows: Sequence[float], highs: Sequence[float]) -> list[list[float]]:
    """Error-bar lengths, clipped at 0: an interval bound can sit a rounding error inside its point estimate."""
    return [
        [max(0.0, v - lo) for v, lo in zip(values, lows)],
        [max(0.0, hi - v) for v, hi in zip(values, highs)],
    ]


def bar_with_ci(
    labels: Sequence[str],
    values: Sequence[float],
    lows: Sequence[float],
    highs: Sequence[float],
    path: str | Path,
    title: str = "",
    ylabel: str = "",
) -> Path:
    fig, ax = plt.subplots(figsize=(max(5, 0.8 * len(labels) + 2), 3.6))
    err = _yerr(values, lows, highs)
    ax.bar(range(len(labels)), values, yerr=err, capsize=4, color="#4c78a8")
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    ax.set_title(_wrap(title, fig), fontsize=10)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def grouped_bars_with_ci(
    groups: Sequence[str],
    series: dict[str, tuple[list, list, list]],
    path: str | Path,
    title: str = "",
    ylabel: str = "",
) -> Path:
    """``series[name] = (values, lows, highs)`` over ``groups``."""
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(groups) + 2), 3.6))
    width = 0.8 / max(1, len(series))
    for k, (name, (vals, lows, highs)) in enumerate(series.items()):
        xs = [i + (k - (len(series) - 1) / 2) * width for i in range(len(groups))]
        err = _yerr(vals, lows, highs)
        ax.bar(xs, vals, width=width, yerr=err, capsize=3, label=name)
    ax.set_xticks(range(len(groups)), groups)
    ax.set_title(_wrap(title, fig), fontsize=10)
    ax.set_ylabel(ylabel)
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def line_sweep(
    x: Sequence[float],
    series: dict[str, Sequence[float]],
    path: str | Path,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    mark_x: float | None = None,
) -> Path:
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for name, ys in series.items():
        ax.plot(list(x), list(ys), marker="o", ms=3, label=name)
    if mark_x is not None:
        ax.axvline(mark_x, color="grey", ls="--", lw=1, label=f"chosen: {mark_x}")
    ax.set_title(_wrap(title, fig), fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend()
    ax.grid(alpha=0.3)
    return _save(fig, path)


def _wrap(title: str, fig: object) -> str:
    """Wrap a title to the figure's width (about 11 characters per inch at font size 10) so it is never cut."""
    width = fig.get_size_inches()[0]
    return textwrap.fill(title, max(24, int(width * 11)))


def heatmap(
    matrix: Sequence[Sequence[float]],
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    path: str | Path,
    title: str = "",
    fmt: str = ".2f",
    xlabel: str = "",
    ylabel: str = "",
    colorbar_label: str = "",
) -> Path:
    """A labelled grid of values (e.g. accuracy over layer x strength), each cell annotated."""
    fig, ax = plt.subplots(figsize=(max(5, 0.7 * len(col_labels) + 3), max(3.2, 0.5 * len(row_labels) + 1.8)))
    im = ax.imshow(matrix, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(col_labels)), col_labels, rotation=30, ha="right")
    ax.set_yticks(range(len(row_labels)), row_labels)
    for i, row in enumerate(matrix):
        for j, v in enumerate(row):
            ax.text(j, i, format(v, fmt), ha="center", va="center", color="w", fontsize=8)
    cbar = fig.colorbar(im, ax=ax)
    if colorbar_label:
        cbar.set_label(colorbar_label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(_wrap(title, fig), fontsize=10)
    return _save(fig, path)


def scatter_highlight(
    x: Sequence[float],
    y: Sequence[float],
    path: str | Path,
    highlight: Sequence[int] = (),
    labels: Sequence[str] | None = None,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
) -> Path:
    """Points with a y = x diagonal; ``highlight`` indices drawn in red and labelled."""
    fig, ax = plt.subplots(figsize=(4.8, 4.4))
    ax.scatter(list(x), list(y), s=12, color="#4c78a8", alpha=0.7)
    for i in highlight:
        ax.scatter([x[i]], [y[i]], s=24, color="#e45756")
        ax.annotate(
            labels[i] if labels else str(i),
            (x[i], y[i]),
            fontsize=7,
            xytext=(3, 3),
            textcoords="offset points",
        )
    hi = max([*x, *y, 1e-9])
    lo = min([*x, *y, 0.0])
    ax.plot([lo, hi], [lo, hi], color="grey", ls="--", lw=1)
    ax.set_title(_wrap(title, fig), fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    return _save(fig, path)
