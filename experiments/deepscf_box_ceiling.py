"""How good can a box density be as an SCF start? The converged density itself, sampled on a grid model's box
and turned into a density matrix by ``reference.guess_from_box``, starts the SCF: the cycles and wall time
that a perfect model would give, against PySCF's minao guess. Also the floor of any guess: the SCF started
from the converged density matrix, which still pays PySCF's fixed cost (the four-centre integrals, computed
once in core before the first cycle, and the first Fock build) and one or two cycles.

This bounds what any grid model can save at its box resolution, before its own costs (model load,
inference) are counted. ``--spacings`` repeats the box experiment at other spacings (same extent).

    python experiments/deepscf_box_ceiling.py [--model deepscf-qm9] [--molecules builtin:urea smiles:...]
        [--spacings 0.4 0.3 0.2]

Writes experiments/results/deepscf_box_ceiling.json and prints a table (run it on an otherwise idle machine).
"""

import argparse
import json
import os
import time

import numpy as np

from dft_operators import api, molecule, reference
from dft_operators.workflows import grid_density
from bench_scf_start import MOLECULES

HERE = os.path.dirname(os.path.abspath(__file__))


def timed_scf(mol: molecule.Molecule, level: reference.Level, dm0=None) -> dict:
    state = reference.run_ks(mol, level, dm0=dm0)
    return {"cycles": state.cycles, "seconds": state.seconds, "energy": state.energy, "state": state}


def box_start(mol: molecule.Molecule, level: reference.Level, reference_state, grid) -> dict:
    """The SCF from the converged density on ``grid``: conversion and SCF seconds, cycles."""
    start = time.perf_counter()
    dm0 = reference.guess_from_box(mol, level, grid, reference.density_on_box(reference_state.density, grid))
    conversion = time.perf_counter() - start
    run = timed_scf(mol, level, dm0)
    return {"cycles": run["cycles"], "conversion_seconds": conversion, "scf_seconds": run["seconds"],
            "seconds": conversion + run["seconds"], "energy_difference": run["energy"] - reference_state.energy}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="deepscf-qm9", help="the grid model whose box (and level) to use")
    parser.add_argument("--molecules", nargs="+", default=list(MOLECULES))
    parser.add_argument("--spacings", nargs="*", type=float, default=[],
                        help="also boxes of these spacings (Bohr), of the model's box extent")
    args = parser.parse_args()
    model = api.load_model(args.model)
    level = model.level
    rows = []
    print(f"{'molecule':36s} {'minao s':>8s} {'cyc':>3s} {'floor s':>8s} {'cyc':>3s} {'box s':>7s} {'cyc':>3s} "
          f"{'conv s':>6s} {'box/minao':>9s} {'floor/minao':>11s}", flush=True)
    for spec in args.molecules:
        mol = molecule.parse_molecule(spec)
        minao = timed_scf(mol, level)
        floor = timed_scf(mol, level, minao["state"].density.dm)
        box_shape = grid_density.fitting_box_shape(mol.positions, model.card)
        grid = grid_density.box_for(mol.positions, model.card, box_shape=box_shape)
        row = {"molecule": spec, "minao": {k: minao[k] for k in ("cycles", "seconds")},
               "converged_density_matrix": {k: floor[k] for k in ("cycles", "seconds")},
               "model_box": {"spacing": grid.spacing, "shape": list(grid.shape),
                             **box_start(mol, level, minao["state"], grid)}}
        for spacing in args.spacings:
            extent = grid.spacing * grid.shape[0]
            finer = grid.centered(mol.positions.mean(0), spacing, int(round(extent / spacing)))
            row[f"box_{spacing}"] = box_start(mol, level, minao["state"], finer)
        row["box_ratio_to_minao"] = row["model_box"]["seconds"] / minao["seconds"]
        row["floor_ratio_to_minao"] = floor["seconds"] / minao["seconds"]
        rows.append(row)
        box = row["model_box"]
        print(f"{spec[:36]:36s} {minao['seconds']:8.2f} {minao['cycles']:3d} {floor['seconds']:8.2f} "
              f"{floor['cycles']:3d} {box['seconds']:7.2f} {box['cycles']:3d} {box['conversion_seconds']:6.2f} "
              f"{row['box_ratio_to_minao']:9.2f} {row['floor_ratio_to_minao']:11.2f}", flush=True)
    total = {key: sum(r[key]["seconds"] for r in rows) for key in ("minao", "converged_density_matrix", "model_box")}
    summary = {"model": args.model, "level": level.as_dict(), "rows": rows, "total_seconds": total,
               "box_total_ratio_to_minao": total["model_box"] / total["minao"],
               "floor_total_ratio_to_minao": total["converged_density_matrix"] / total["minao"],
               "cycles": {key: [r[key]["cycles"] for r in rows]
                          for key in ("minao", "converged_density_matrix", "model_box")},
               "box_median_ratio_to_minao": float(np.median([r["box_ratio_to_minao"] for r in rows]))}
    print(f"total: the converged density on {args.model}'s box {summary['box_total_ratio_to_minao']:.2f}x minao's "
          f"time, the converged density matrix {summary['floor_total_ratio_to_minao']:.2f}x")
    with open(os.path.join(HERE, "results", "deepscf_box_ceiling.json"), "w") as f:
        json.dump(summary, f, indent=1)


if __name__ == "__main__":
    main()
