"""Training history on disk: metrics.json, metrics.csv and curves.png, each written atomically."""

import csv
import io
import json
import os

from xpnet.fileio import atomic_write


def write_history(out_dir, history, config):
    """Write the per-epoch ``history`` (a list of dicts) and the run's ``config``."""
    with atomic_write(os.path.join(out_dir, "metrics.json"), "w") as f:
        json.dump({"config": config, "history": history}, f, indent=2)
    if history:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
        with atomic_write(os.path.join(out_dir, "metrics.csv"), "w") as f:
            f.write(buf.getvalue())
        plot_curves(history, os.path.join(out_dir, "curves.png"))


def plot_curves(history, path):
    """Loss and (for a classifier) accuracy per epoch, train and test, side by side."""
    # A Figure on its own Agg canvas: the caller's pyplot and matplotlib backend stay as they are.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    epochs = [h["epoch"] for h in history]
    panels = ("loss", "acc") if "train_acc" in history[0] else ("loss",)  # a regression has no accuracy
    fig = Figure(figsize=(5 * len(panels), 4))
    FigureCanvasAgg(fig)
    for ax, key in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels):
        name = "loss" if key == "loss" else "accuracy"
        ax.plot(epochs, [h[f"train_{key}"] for h in history], "o-",
                label="train" if key == "loss" else "train (dropout on)")
        ax.plot(epochs, [h[f"test_{key}"] for h in history], "s-", label="test")
        ax.set(xlabel="epoch", ylabel=name, title=name)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    with atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=100)
