"""PNG of densities on a box: the plane z = const through the molecule's centroid, one panel per field."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_slices(path: str, grid, fields: dict, title: str = "") -> None:
    """Writes panels of the z = centre plane of each field [nx, ny, nz] on ``grid`` (Bohr axes).

    Fields whose name holds "-" (differences) share a symmetric red-blue scale, the others one viridis scale.
    """
    k = grid.shape[2] // 2
    xs, ys = grid.axes()[:2]
    extent = (xs[0], xs[-1], ys[0], ys[-1])
    densities = [f[:, :, k] for name, f in fields.items() if "-" not in name]
    differences = [f[:, :, k] for name, f in fields.items() if "-" in name]
    top = max(float(np.max(d)) for d in densities) if densities else 1.0
    span = max(float(np.max(np.abs(d))) for d in differences) if differences else 1.0
    fig, axes = plt.subplots(1, len(fields), figsize=(3.4 * len(fields), 3.2), dpi=110, squeeze=False)
    for ax, (name, field) in zip(axes[0], fields.items()):
        difference = "-" in name
        image = ax.imshow(field[:, :, k].T, origin="lower", extent=extent, cmap="RdBu_r" if difference else "viridis",
                          vmin=-span if difference else 0.0, vmax=span if difference else top)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("x (Bohr)")
        fig.colorbar(image, ax=ax, shrink=0.8)
    axes[0][0].set_ylabel("y (Bohr)")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
