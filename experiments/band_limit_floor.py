"""How coarse may a grid model's training grid be? The NMAE floor that band-limiting imposes on QM9 densities.

Training on a grid of n points per axis (same box) and predicting on the fine grid by zero-padding can at
best reproduce the density's Fourier modes |k| < n/2: this script measures that floor on records of a grid
dataset, for the density itself (a direct model, V2Rho-FNO) and for the residual rho - rho0 added to the
fine rho0 (a Delta-learning model). Run:

    python experiments/band_limit_floor.py [--data ~/dft_data/qm9_grid] [--records 12] [--sizes 16 28 36 40]
"""

import argparse
import os

import numpy as np

from dft_operators.io.dataset import Dataset
from dft_operators.training.metrics import nmae_percent


def band_limited(field: np.ndarray, n: int) -> np.ndarray:
    """The field [N, N, N] with only its Fourier modes |k| < n / 2 on each axis kept."""
    k = np.fft.fftfreq(field.shape[0]) * field.shape[0]
    keep = np.abs(k) < n / 2
    mask = keep[:, None, None] & keep[None, :, None] & keep[None, None, :]
    return np.real(np.fft.ifftn(np.fft.fftn(field) * mask))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.path.expanduser("~/dft_data/qm9_grid"))
    parser.add_argument("--records", type=int, default=12)
    parser.add_argument("--sizes", type=int, nargs="+", default=[16, 28, 36, 40])
    args = parser.parse_args()
    ds = Dataset(args.data)
    rows = [ds.read(rid, ["grid/rho", "grid/rho0"]) for rid in ds.ids[:args.records]]
    print(f"{len(rows)} records on {rows[0]['grid/rho'].shape[0]}^3 boxes: mean NMAE (%) of the band-limited density")
    for n in args.sizes:
        direct = [nmae_percent(band_limited(r["grid/rho"], n)[None], r["grid/rho"][None], 1.0)[0] for r in rows]
        delta = [nmae_percent((r["grid/rho0"] + band_limited(r["grid/rho"] - r["grid/rho0"], n))[None],
                              r["grid/rho"][None], 1.0)[0] for r in rows]
        print(f"  n = {n:3d}: rho {np.mean(direct):6.2f}   rho0 + band-limited (rho - rho0) {np.mean(delta):6.2f}")


if __name__ == "__main__":
    main()
