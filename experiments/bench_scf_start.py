"""Wall time of an SCF started from a grid model's density against PySCF's minao, atom and huckel guesses.

Each run is the command a user types, ``dft-operators scf MOLECULE --guess G --json``, in a fresh process;
its ``seconds`` hold every cost after start-up (model load, compiling or reading JAX's persistent cache,
inference, the conversion to a density matrix, the SCF), and ``timings.import`` the start-up beside it. The
model runs once per molecule before it is timed, so that its compilation is in JAX's cache (a second call on
a box shape, as a user's would be). Also ``--no-scf``: the Harris-Foulkes energy of the predicted density and
the energy after one diagonalisation, against the converged SCF, in kcal/mol. Molecules: held-out ones (in no
training set of the model), small ones and some with 10-15 heavy atoms.

    python experiments/bench_scf_start.py [--model deepscf-small] [--molecules builtin:urea smiles:...]

Writes experiments/results/bench_scf_start.json and prints a table (run it on an otherwise idle machine).
"""

import argparse
import json
import os
import subprocess
import sys

import numpy as np

from dft_operators import units

HERE = os.path.dirname(os.path.abspath(__file__))
GUESSES = ("minao", "atom", "huckel")
MOLECULES = ("builtin:methylamine", "builtin:urea", "builtin:acetone", "builtin:pyridine",
             "smiles:CC(=O)Nc1ccc(O)cc1",  # paracetamol, 11 heavy atoms
             "smiles:c1ccc2ccccc2c1",  # naphthalene, 10
             "smiles:CC(=O)Oc1ccccc1C(=O)O",  # aspirin, 13
             "smiles:Cn1cnc2c1c(=O)n(C)c(=O)n2C")  # caffeine, 14


def scf(molecule: str, *options: str) -> dict:
    """The JSON result of one ``dft-operators scf`` run in a fresh process."""
    proc = subprocess.run([sys.executable, "-m", "dft_operators.cli", "scf", molecule, *options, "--json", "--quiet"],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"scf {molecule} {' '.join(options)} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench(molecule: str, model: str) -> dict:
    row = {"molecule": molecule}
    for guess in GUESSES:
        row[guess] = scf(molecule, "--guess", guess)
    scf(molecule, "--guess", model, "--no-scf")  # fills JAX's compilation cache for this box shape
    row["model"] = scf(molecule, "--guess", model)
    row["no_scf"] = scf(molecule, "--guess", model, "--no-scf")
    energy = row["minao"]["energy"]
    for guess in (*GUESSES, "model"):
        if abs(row[guess]["energy"] - energy) > 1e-6:
            raise SystemExit(f"{molecule}: the SCF from {guess} ends at {row[guess]['energy']:.8f} Ha, minao at "
                             f"{energy:.8f}")
    for key in ("energy_harris", "energy_one_step"):
        row["no_scf"][f"{key}_error_kcal_mol"] = (row["no_scf"][key] - energy) * units.HARTREE_TO_KCAL_PER_MOL
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="deepscf-small")
    parser.add_argument("--molecules", nargs="+", default=list(MOLECULES))
    parser.add_argument("--out", default=os.path.join(HERE, "results", "bench_scf_start.json"))
    args = parser.parse_args()
    print(f"{'molecule':36s} {'minao s':>8s} {'cyc':>3s} {'atom':>6s} {'huckel':>6s} {'model s':>8s} {'cyc':>3s} "
          f"{'ratio':>6s} {'conv s':>6s} {'infer s':>7s} {'start s':>7s} {'Harris':>7s} {'1-step':>7s}", flush=True)
    rows = []
    for molecule in args.molecules:
        row = bench(molecule, args.model)
        rows.append(row)
        ml, minao = row["model"], row["minao"]
        row["ratio_to_minao"] = ml["seconds"] / minao["seconds"]
        print(f"{molecule[:36]:36s} {minao['seconds']:8.2f} {minao['cycles']:3d} {row['atom']['seconds']:6.2f} "
              f"{row['huckel']['seconds']:6.2f} {ml['seconds']:8.2f} {ml['cycles']:3d} {row['ratio_to_minao']:6.2f} "
              f"{ml['timings']['guess_conversion']:6.2f} {ml['timings']['inference']:7.2f} "
              f"{ml['timings']['import']:7.2f} {row['no_scf']['energy_harris_error_kcal_mol']:7.2f} "
              f"{row['no_scf']['energy_one_step_error_kcal_mol']:7.2f}", flush=True)
    total = {g: sum(r[g]["seconds"] for r in rows) for g in (*GUESSES, "model")}
    summary = {
        "model": args.model, "molecules": args.molecules, "rows": rows,
        "total_seconds": total, "total_ratio_to_minao": total["model"] / total["minao"],
        "median_ratio_to_minao": float(np.median([r["ratio_to_minao"] for r in rows])),
        "cycles": {g: [r[g]["cycles"] for r in rows] for g in (*GUESSES, "model")},
        "harris_mean_abs_error_kcal_mol": float(np.mean([abs(r["no_scf"]["energy_harris_error_kcal_mol"])
                                                        for r in rows])),
        "one_step_mean_abs_error_kcal_mol": float(np.mean([abs(r["no_scf"]["energy_one_step_error_kcal_mol"])
                                                          for r in rows])),
        "startup_seconds_median": float(np.median([r["model"]["timings"]["import"] for r in rows])),
    }
    print(f"total {total['model']:.1f} s from {args.model} against minao's {total['minao']:.1f} s "
          f"(ratio {summary['total_ratio_to_minao']:.2f}, median per molecule {summary['median_ratio_to_minao']:.2f}); "
          f"Harris error {summary['harris_mean_abs_error_kcal_mol']:.2f} kcal/mol, one step "
          f"{summary['one_step_mean_abs_error_kcal_mol']:.2f}")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(summary, f, indent=1)


if __name__ == "__main__":
    main()
