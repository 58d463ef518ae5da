"""Harmonic IR spectrum of a built-in molecule (ethanol, ethanethiol, resorcinol) at LDA (PW92) / def2-svp,
all-electron: the reference of the DenSNet MD spectra (``densnet_md_ir.py``).

Optimises the built-in geometry (BFGS on analytic forces, max force < 3e-5 Hartree/Bohr), then
takes frequencies from PySCF's analytic Hessian and intensities from finite-difference dipole derivatives
along the normal modes (``dft_operators.reference.harmonic_ir``). Writes the level, the optimised
geometry (xyz, Angstrom), the energy, all modes and the strong bands (intensity >= 10 % of the strongest)
to experiments/results/<molecule>_harmonic_ir.json and prints a table. Several minutes on one core (ethanol):
    OMP_NUM_THREADS=1 python experiments/harmonic_ir.py [--molecule ethanol] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import numpy as np

from dft_operators import units
from dft_operators.molecule import builtin
from dft_operators.reference import ALL_ELECTRON, harmonic_ir, optimize_geometry

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
STRONG_FRACTION = 0.1  # a band is strong if its intensity is at least this fraction of the strongest


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--molecule", default="ethanol", help="a built-in molecule's name")
    parser.add_argument("--out", type=pathlib.Path,
                        help="JSON file to write (default experiments/results/<molecule>_harmonic_ir.json)")
    args = parser.parse_args()
    out = args.out or RESULTS / f"{args.molecule}_harmonic_ir.json"

    start = time.perf_counter()
    molecule, state = optimize_geometry(builtin(args.molecule), ALL_ELECTRON, progress=True)
    optimised = time.perf_counter()
    ir = harmonic_ir(molecule, ALL_ELECTRON)
    done = time.perf_counter()

    frequencies, intensities = ir["frequencies_cm1"], ir["intensities_km_mol"]
    strong = intensities >= STRONG_FRACTION * intensities.max()
    result = {
        "level": ALL_ELECTRON.as_dict(),
        "geometry_xyz_angstrom": molecule.to_xyz(f"{args.molecule}, optimised at lda,pw/def2-svp (Angstrom)"),
        "energy_hartree": state.energy,
        "max_force_hartree_per_bohr": float(np.abs(state.forces - state.forces.mean(axis=0)).max()),
        "n_imaginary": ir["n_imaginary"],
        "frequencies_cm1": frequencies.tolist(),
        "intensities_km_mol": intensities.tolist(),
        "reduced_masses_amu": ir["reduced_masses_amu"].tolist(),
        "strong_bands": [{"mode": int(k), "frequency_cm1": float(frequencies[k]),
                          "intensity_km_mol": float(intensities[k])} for k in np.flatnonzero(strong)],
        "strong_fraction": STRONG_FRACTION,
        "ir_constant_km_mol": units.IR_INTENSITY_KM_PER_MOL,
        "seconds": {"optimisation": optimised - start, "hessian_and_dipoles": done - optimised},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")

    print(f"\n{args.molecule} lda,pw/def2-svp: E = {state.energy:.8f} Ha, {ir['n_imaginary']} imaginary modes")
    print(f"{'mode':>4s} {'nu / cm-1':>10s} {'I / km/mol':>11s} {'mu / u':>7s}")
    for k, (nu, intensity, mu) in enumerate(zip(frequencies, intensities, ir["reduced_masses_amu"])):
        print(f"{k:4d} {nu:10.1f} {intensity:11.2f} {mu:7.3f}{'  strong' if strong[k] else ''}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
