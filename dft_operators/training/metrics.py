"""Metrics for densities and energies, the JSON-lines log and the learning-curve plot."""

from __future__ import annotations

import json
import os

import jax.numpy as jnp
import numpy as np


def nmae_percent(pred, ref, weights):
    """Normalised mean absolute error, 100 * int|pred - ref| / int ref, per sample.

    Args:
      pred, ref: densities [batch, ...points] (electrons/Bohr^3).
      weights: quadrature weights (Bohr^3) broadcastable to ``pred`` (the voxel volume on a box).
    Returns:
      [batch] percent.
    """
    axes = tuple(range(1, pred.ndim))
    return 100.0 * (jnp.abs(pred - ref) * weights).sum(axes) / (ref * weights).sum(axes)


def rmse(pred, ref):
    """Root-mean-square error per sample, [batch], in the units of the inputs."""
    axes = tuple(range(1, pred.ndim))
    return jnp.sqrt(((pred - ref) ** 2).mean(axes))


def electron_count_error(pred, n_electrons, weights):
    """int pred - N per sample, [batch] electrons."""
    axes = tuple(range(1, pred.ndim))
    return (pred * weights).sum(axes) - n_electrons


class JsonLog:
    """Appends one JSON object a line; survives kills (each line is flushed)."""

    def __init__(self, path: str):
        self.path = path

    def write(self, **entry) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(entry) + "\n")

    def rewrite(self, entries: list[dict]) -> None:
        """Replaces the log with ``entries`` (atomically)."""
        with open(self.path + ".tmp", "w") as f:
            f.writelines(json.dumps(e) + "\n" for e in entries)
        os.replace(self.path + ".tmp", self.path)

    def read(self) -> list[dict]:
        if not os.path.exists(self.path):
            return []
        with open(self.path) as f:
            return [json.loads(line) for line in f if line.strip()]


def plot_learning_curve(entries: list[dict], path: str, metric: str = "loss") -> None:
    """Train and validation ``metric`` against epoch, log scale, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [e["epoch"] for e in entries]
    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
    for split in ("train", "val"):
        values = [e.get(f"{split}_{metric}", np.nan) for e in entries]
        ax.plot(epochs, values, marker="o", ms=3, label=split)
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
