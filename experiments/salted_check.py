"""Checks that the density-fitting layer reproduces SALTED's water density-fitting coefficients.

SALTED's PySCF water example (https://github.com/andreagrisafi/SALTED, commit 92b408e, GPL-3, not vendored
here: the data are read from ``--salted-dir``) holds, for 1000 water monomers and 10 dimers, the
coefficients of B3LYP/cc-pVQZ densities fitted on cc-pVQZ-JKFIT with the Coulomb metric,
c = (P|Q)^-1 (Q|mn) D_mn, with p functions stored as (py, pz, px). For each frame this runs the project's
own path (``reference.run_ks`` then ``reference.fit_coefficients``), puts the p functions in SALTED's
order and compares: max |dc|, max |c| and their ratio. Writes experiments/results/salted_check.json and
exits 1 if a frame differs by more than ``--tolerance``. About a minute and a half on one core:
    OMP_NUM_THREADS=1 python experiments/salted_check.py [--frames 0 537 1000] [--salted-dir DIR]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import pathlib
import sys
import time

import numpy as np

from dft_operators.molecule import from_xyz
from dft_operators.reference import Level, fit_coefficients, run_ks

ROOT = pathlib.Path(__file__).resolve().parent.parent
SALTED_DIR = ROOT.parent / "shared" / "external" / "salted_water_pyscf"
RESULTS = ROOT / "experiments" / "results" / "salted_check.json"
# SALTED's level: PySCF's RKS defaults (grids, conv_tol) with b3lyp (VWN-RPA), all-electron.
LEVEL = Level(xc="b3lyp", basis="cc-pvqz", pseudo=None, aux_basis="cc-pvqz-jkfit")


def read_frame(path: pathlib.Path, index: int) -> str:
    """The XYZ text of frame ``index`` (0-based) of a multi-frame (ext)xyz file."""
    lines = path.read_text().splitlines()
    start = 0
    for _ in range(index):
        start += int(lines[start]) + 2
    return "\n".join(lines[start:start + int(lines[start]) + 2]) + "\n"


def salted_order(labels: np.ndarray) -> np.ndarray:
    """Permutation taking PySCF's aux order to SALTED's: each p triple (px, py, pz) -> (py, pz, px).

    Args:
      labels: [naux, 3] (atom, l, m) per aux function, p functions as m = (+1, -1, 0).
    Returns:
      int [naux]; ``c[perm]`` is in SALTED's order.
    """
    perm = np.arange(len(labels))
    for i in np.flatnonzero((labels[:, 1] == 1) & (labels[:, 2] == 1)):  # first (px) of each triple
        perm[i:i + 3] = (i + 1, i + 2, i)
    return perm


def check_frame(salted_dir: pathlib.Path, frame: int) -> dict:
    """One frame: SCF, fit, comparison with SALTED's coefficients."""
    molecule = from_xyz(read_frame(salted_dir / "water_total_from_HEAD.xyz", frame), name=f"salted_{frame}")
    start = time.perf_counter()
    state = run_ks(molecule, LEVEL)
    scf_done = time.perf_counter()
    fit = fit_coefficients(state.density, LEVEL.aux_basis)
    fit_done = time.perf_counter()
    ours = fit["coefficients"][salted_order(fit["aux_labels"])]
    theirs = np.load(salted_dir / "coefficients" / f"coefficients_conf{frame}.npy")
    if ours.shape != theirs.shape:
        raise SystemExit(f"error: frame {frame}: {ours.size} coefficients here, {theirs.size} in SALTED's file")
    diff = np.abs(ours - theirs)
    return {
        "frame": frame, "n_atoms": molecule.n_atoms, "n_coefficients": int(ours.size),
        "energy_hartree": state.energy, "converged": state.converged, "cycles": state.cycles,
        "max_abs_diff": float(diff.max()), "max_abs_coefficient": float(np.abs(theirs).max()),
        "relative_error": float(diff.max() / np.abs(theirs).max()),
        "max_abs_diff_without_reorder": float(np.abs(fit["coefficients"] - theirs).max()),
        "n_electrons_fit": fit["n_electrons_fit"], "coulomb_error_hartree": fit["coulomb_error"],
        "seconds": {"scf": scf_done - start, "fit": fit_done - scf_done},
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[0, 537, 1000],
                        help="frames of water_total_from_HEAD.xyz (0-999 monomers, 1000-1009 dimers)")
    parser.add_argument("--salted-dir", type=pathlib.Path, default=SALTED_DIR)
    parser.add_argument("--tolerance", type=float, default=1e-6, help="largest max |dc| accepted")
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS, help="JSON file to write")
    args = parser.parse_args()
    if not (args.salted_dir / "water_total_from_HEAD.xyz").exists():
        print(f"error: no SALTED water data in {args.salted_dir} (water_total_from_HEAD.xyz and coefficients/, "
              "from SALTED's commit 92b408e; give --salted-dir)", file=sys.stderr)
        sys.exit(2)

    rows = []
    print(f"{'frame':>5s} {'atoms':>5s} {'n_c':>4s} {'max|dc|':>9s} {'max|c|':>7s} {'rel':>9s} {'scf s':>6s} "
          f"{'fit s':>6s}", flush=True)
    for frame in args.frames:
        row = check_frame(args.salted_dir, frame)
        rows.append(row)
        print(f"{frame:5d} {row['n_atoms']:5d} {row['n_coefficients']:4d} {row['max_abs_diff']:9.2e} "
              f"{row['max_abs_coefficient']:7.3f} {row['relative_error']:9.2e} {row['seconds']['scf']:6.1f} "
              f"{row['seconds']['fit']:6.1f}", flush=True)

    worst = max(row["max_abs_diff"] for row in rows)
    result = {
        "frames": rows, "max_abs_diff": worst, "tolerance": args.tolerance, "passed": worst <= args.tolerance,
        "level": LEVEL.as_dict(), "pyscf_version": importlib.metadata.version("pyscf"),
        "data": "SALTED example/water_monomer_PySCF at commit 92b408e (GPL-3, read from --salted-dir)",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"worst max|dc| = {worst:.2e} (tolerance {args.tolerance:.0e}): {'pass' if result['passed'] else 'FAIL'}")
    sys.exit(0 if result["passed"] else 1)


if __name__ == "__main__":
    main()
