"""How good can a box density be as an SCF start? Cycles from the converged density itself, sampled on
boxes of decreasing spacing (same 16 Bohr extent) and turned into a density matrix by
``reference.guess_from_box``, against PySCF's minao guess. This bounds what any grid model (DeepSCF) can
save at a given box resolution.

    python experiments/deepscf_box_ceiling.py [--molecules acetone urea] [--spacings 0.4 0.3 0.2]

Writes experiments/results/deepscf_box_ceiling.json and prints a table.
"""

import argparse
import json
import os

from dft_operators import molecule, reference
from dft_operators.grids import UniformGrid

HERE = os.path.dirname(os.path.abspath(__file__))
EXTENT = 16.0  # Bohr, the box edge of the shipped grid models


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--molecules", nargs="+", default=["acetone", "urea"])
    parser.add_argument("--spacings", nargs="+", type=float, default=[0.4, 0.3, 0.2])
    args = parser.parse_args()
    level = reference.Level()
    rows = []
    for name in args.molecules:
        mol = molecule.builtin(name)
        state = reference.run_ks(mol, level)
        row = {"molecule": name, "minao": reference.run_ks(mol, level).cycles,
               "converged_density_matrix": reference.run_ks(mol, level, dm0=state.density.dm).cycles}
        for spacing in args.spacings:
            grid = UniformGrid.centered(mol.positions.mean(0), spacing, int(round(EXTENT / spacing)))
            dm0 = reference.guess_from_box(mol, level, grid, reference.density_on_box(state.density, grid))
            run = reference.run_ks(mol, level, dm0=dm0)
            row[f"box_{spacing}"] = {"cycles": run.cycles, "energy_difference": run.energy - state.energy}
        rows.append(row)
        print(json.dumps(row))
    with open(os.path.join(HERE, "results", "deepscf_box_ceiling.json"), "w") as f:
        json.dump({"level": level.as_dict(), "extent_bohr": EXTENT, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
