"""SCF cycles from DeepSCF's predicted density against PySCF's minao, atom and huckel guesses.

For each held-out molecule (built-in geometry): PySCF's SCF from every guess (``scf_guess.scf_from_guess``),
and, as the ceiling of the density -> density-matrix step, from the converged density itself sampled on the
model's box ("exact box"). Also the NMAE of the model's density and of rho0 on that box.

    python experiments/deepscf_scf_cycles.py [--model deepscf-small] [--molecules acetone urea ...]

Writes experiments/results/deepscf_scf_cycles.json and prints a table.
"""

import argparse
import json
import os

import numpy as np
from train_shipped_fno import TEST_MOLECULES

from dft_operators import api, molecule, reference
from dft_operators.scf_guess import scf_from_guess
from dft_operators.training import metrics

HERE = os.path.dirname(os.path.abspath(__file__))
GUESSES = ("model", "minao", "atom", "huckel")


def compare(model: api.Model, mol: molecule.Molecule) -> dict:
    """Cycles and energies from each guess, the exact-box ceiling, and the density errors, for one molecule."""
    row = {"molecule": mol.name}
    for guess in GUESSES:
        row[guess] = scf_from_guess(mol, model if guess == "model" else guess)
    state = reference.run_ks(mol, model.level)
    prediction = api.predict(model, mol)
    grid = prediction["grid"]
    exact = reference.density_on_box(state.density, grid)
    dm0 = reference.guess_from_box(mol, model.level, grid, exact)
    ceiling = reference.run_ks(mol, model.level, dm0=dm0)
    row["exact box"] = {"cycles": ceiling.cycles, "energy": ceiling.energy, "converged": ceiling.converged}
    rho0 = reference.density_on_box(reference.atomic_guess(mol, model.level), grid)
    nmae = lambda rho: float(metrics.nmae_percent(rho[None], exact[None], grid.voxel_volume)[0])  # noqa: E731
    row.update(nmae_percent=nmae(prediction["density"]), rho0_nmae_percent=nmae(rho0), box_shape=list(grid.shape))
    energies = [row[g]["energy"] for g in (*GUESSES, "exact box")]
    row["energy_spread_hartree"] = float(max(energies) - min(energies))
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="deepscf-small")
    parser.add_argument("--molecules", nargs="+", default=list(TEST_MOLECULES))
    parser.add_argument("--out", default=os.path.join(HERE, "results", "deepscf_scf_cycles.json"))
    args = parser.parse_args()
    model = api.load_model(args.model)
    seen = set(model.card.get("split", {}).get("train_molecules", []))
    rows = [compare(model, molecule.builtin(n)) for n in args.molecules if n not in seen]
    print(f"{'molecule':14s} {'NMAE %':>7s} {'rho0 %':>7s}  cycles: " + " ".join(f"{g:>9s}" for g in (*GUESSES, "exact box")))
    for r in rows:
        print(f"{r['molecule']:14s} {r['nmae_percent']:7.2f} {r['rho0_nmae_percent']:7.2f}          "
              + " ".join(f"{r[g]['cycles']:9d}" for g in (*GUESSES, "exact box")))
    mean = {g: float(np.mean([r[g]["cycles"] for r in rows])) for g in (*GUESSES, "exact box")}
    summary = {"mean_cycles": mean, "model_over_minao": mean["model"] / mean["minao"],
               "mean_nmae_percent": float(np.mean([r["nmae_percent"] for r in rows])),
               "mean_rho0_nmae_percent": float(np.mean([r["rho0_nmae_percent"] for r in rows])),
               "max_energy_spread_hartree": max(r["energy_spread_hartree"] for r in rows)}
    print(json.dumps(summary))
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"model": model.name, "level": model.card["level"], "molecules": rows, "summary": summary}, f,
                  indent=1)


if __name__ == "__main__":
    main()
