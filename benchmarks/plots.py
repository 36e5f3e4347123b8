"""PNG figures: per-type pie charts (the book's Figure 8.14), throughput bars, conv time splits.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot, no global backend switch).
"""

import math
import os
import textwrap

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from xpnet.profile import TYPES

COLORS = dict(zip(TYPES, ("#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#e15759", "#edc948", "#9c9c9c")))
DEVICE_TITLES = {"numpy": "CPU (numpy backend)", "cuda": "GPU (cuda backend)"}


def _save(fig, path):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=110)
    return path


def pie_pair(path, title, panels, phase="forward"):
    """Pie charts side by side, one per device, of the time share of each layer type.

    Args:
        path: PNG file to write. title: figure title.
        panels: ``[(backend name, by_type list from xpnet.profile.summarize or None, note)]``; a panel
            without data shows its note ("not available on this machine") instead of a pie.
        phase: ``"forward"`` or ``"backward"``: which share to draw.

    Returns:
        path.
    """
    fig = Figure(figsize=(5.2 * len(panels), 5.6))
    fig.suptitle(title, fontsize=11)
    for i, (name, by_type, note) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        device = DEVICE_TITLES.get(name, name)
        if not by_type:
            ax.axis("off")
            ax.set_title(device, fontsize=11)
            ax.text(0.5, 0.5, textwrap.fill(note or "not measured", 40), ha="center", va="center", fontsize=10)
            continue
        ax.set_title(f"{device}\n{note}" if note else device, fontsize=10)
        shares = [(r["type"], r[f"{phase}_share"]) for r in by_type if r[f"{phase}_share"]]
        wedges, _ = ax.pie([s for _, s in shares], colors=[COLORS[k] for k, _ in shares], startangle=90,
                           counterclock=False, wedgeprops=dict(edgecolor="white", linewidth=0.8))
        for wedge, (kind, share) in zip(wedges, shares):
            if share >= 0.04:
                _label_wedge(ax, wedge, f"{kind}\n{100 * share:.0f}%")
        ax.legend(wedges, [f"{k} {100 * s:.1f}%" for k, s in shares], loc="upper center",
                  bbox_to_anchor=(0.5, 0.0), ncol=4, fontsize=8, frameon=False)
        ax.set_aspect("equal")
    fig.subplots_adjust(bottom=0.14, top=0.80, wspace=0.15)
    return _save(fig, path)


def _label_wedge(ax, wedge, text):
    angle = math.radians((wedge.theta1 + wedge.theta2) / 2)
    ax.text(0.62 * math.cos(angle), 0.62 * math.sin(angle), text, ha="center", va="center", fontsize=9,
            color="white", fontweight="bold")


def throughput_bars(path, title, series, batch_sizes):
    """Grouped bars of images/s: one group per batch size, one bar per series.

    Args:
        series: ``{label: {batch: images_per_s}}`` (a missing batch leaves a gap).
    """
    fig = Figure(figsize=(7.5, 4.5))
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / max(1, len(series))
    for i, (label, values) in enumerate(series.items()):
        xs = [j + (i - (len(series) - 1) / 2) * width for j in range(len(batch_sizes))]
        ax.bar(xs, [values.get(b, 0.0) for b in batch_sizes], width, label=label)
    ax.set_xticks(range(len(batch_sizes)), [str(b) for b in batch_sizes])
    ax.set_xlabel("batch size")
    ax.set_ylabel("training images / s (median)")
    ax.set_title(title, fontsize=11)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def split_bars(path, title, labels, parts, notes=None):
    """Horizontal stacked bars of where each conv layer's time goes, as percentages of its total.

    Args:
        labels: one per bar (e.g. ``"alexnet conv2 fwd"``).
        parts: ``{part name: [ms per bar]}`` stacked in the given order.
        notes: optional text per bar written right of it (e.g. achieved GFLOP/s).
    """
    totals = [sum(v) or 1.0 for v in zip(*parts.values())]
    fig = Figure(figsize=(8.5, 0.3 * len(labels) + 1.8))
    ax = fig.add_subplot(1, 1, 1)
    left = [0.0] * len(labels)
    for name, values in parts.items():
        shares = [100 * v / t for v, t in zip(values, totals)]
        ax.barh(range(len(labels)), shares, left=left, label=name)
        left = [a + b for a, b in zip(left, shares)]
    for i, note in enumerate(notes or []):
        ax.text(101, i, note, va="center", fontsize=7)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.set_xlim(0, 125 if notes else 100)
    ax.invert_yaxis()
    ax.set_xlabel("% of the layer's time (medians)")
    ax.set_title(title, fontsize=10, pad=22)
    ax.legend(fontsize=8, ncol=3, loc="lower left", bbox_to_anchor=(0.0, 1.0), frameon=False)
    fig.tight_layout()
    return _save(fig, path)
