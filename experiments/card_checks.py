"""Small checks that each shipped model still reproduces its card: the card's test metric on 1-2 molecules.

A card's ``test_metrics`` come from 10-50 generated held-out records (``experiments/train_shipped_*.py``),
too slow to recompute in a test. This script computes the same metrics on one or two held-out molecules at
their built-in geometries (``molecule.builtin``; SMILES at their seed-0 RDKit conformers) with
``dft_operators.model_checks`` (its docstring defines them).

``--write`` stores the values in each card as ``"checks"`` (with their tolerance and the card's test
metrics beside them), which ``tests/test_shipped_cards.py`` recomputes (the first molecule of each);
without it the script recomputes,
prints a table and exits 1 when a value disagrees with the card's checks.

Run: python experiments/card_checks.py [--write] [--models NAME ...]
"""

import argparse
import json
import os
import sys

import numpy as np

from dft_operators import api, model_checks

COMMAND = "python experiments/card_checks.py"
# Held-out test molecules of each shipped model (card "test_molecules"), small enough to check in seconds.
MOLECULES = {"v2rho-fno-small": ("methylamine", "urea"), "deepscf-small": ("methylamine", "urea"),
             "kineticnet-small": ("h2",), "densnet-ethanol": ("ethanol",),
             "densnet-ethanethiol": ("ethanethiol",), "densnet-resorcinol": ("resorcinol",),
             "deepscf-qm9": ("C#CC1OCC1C",), "v2rho-fno-qm9": ("C#CC1OCC1C",)}
# How each check's geometries relate to the card's held-out records, stored beside the values.
NOTES = {
    "v2rho-fno-small": "built-in geometries; the card's test records are 2 displaced (0.1 Bohr), rotated conformers "
                       "of each of 5 molecules",
    "deepscf-small": "built-in geometries; the card's test records are 2 displaced (0.1 Bohr), rotated conformers "
                     "of each of 5 molecules",
    "kineticnet-small": "ground state at the built-in geometry; the card's test records are displaced (0.2 Bohr) "
                        "and under random external potentials (0.2 Hartree), per-record energy errors 0.004-0.68",
    "deepscf-qm9": "the RDKit seed-0 conformer of a QM9 test molecule (7 heavy atoms); the card's test records "
                   "are the 100 QM9 test molecules at their QM9 geometries, rotated",
    "v2rho-fno-qm9": "the RDKit seed-0 conformer of a QM9 test molecule (7 heavy atoms); the card's test records "
                     "are the 100 QM9 test molecules at their QM9 geometries, rotated",
    "densnet-ethanol": "built-in ethanol is the seed-0 RDKit conformer that test geometries are displaced from "
                       "(0.12 Bohr); its energy error is below float32's spacing at E = -154 Hartree (0.0096 kcal/mol)",
    "densnet-ethanethiol": "built-in ethanethiol is the seed-0 RDKit conformer that test geometries are displaced "
                           "from (0.12 Bohr); float32's spacing at E = -476 Hartree is 0.019 kcal/mol",
    "densnet-resorcinol": "built-in resorcinol is the seed-0 RDKit conformer (anti-anti) that test geometries are "
                          "displaced from (0.12 Bohr); float32's spacing at E = -379 Hartree is 0.019 kcal/mol",
}
# Absolute tolerance of a check: 1e-3 of its largest value, but not below what float32 resolves. Repeated
# runs here (1 or 2 threads) agree to 1e-6 relative; the floor is for other CPUs (summation order, vector
# width). DenSNet sums ethanol's total energy (-154 Hartree) in float32, whose spacing there is 1.5e-5
# Hartree = 0.0096 kcal/mol: its energy error is resolved to about that, so its floor is two such steps
# (ethanethiol's -476 Hartree and resorcinol's -379: 3.1e-5 Hartree = 0.019 kcal/mol).
RELATIVE_TOLERANCE = 1e-3
FLOOR = {"nmae_percent": 1e-3, "energy_error_kcal_mol": 1e-3, "derivative_rmse": 1e-6}
MODEL_FLOOR = {"densnet-ethanol": {"energy_error_kcal_mol": 0.02},
               "densnet-ethanethiol": {"energy_error_kcal_mol": 0.04},
               "densnet-resorcinol": {"energy_error_kcal_mol": 0.04}}


def tolerance(name: str, metric: str, values: list[float]) -> float:
    """The absolute tolerance (the metric's unit) of a model's check values of a metric."""
    floor = MODEL_FLOOR.get(name, {}).get(metric, FLOOR[metric])
    return float(f"{max(RELATIVE_TOLERANCE * max(abs(v) for v in values), floor):.2g}")  # 2 significant digits


def run_check(name: str) -> dict:
    """The check of a shipped model: {"molecules": [...], metric: [value per molecule]}."""
    model = api.load_model(name)
    rows = [model_checks.check(model, model_checks.check_molecule(m)) for m in MOLECULES[name]]
    return {"molecules": list(MOLECULES[name]), **{k: [row[k] for row in rows] for k in rows[0]}}


def card_entry(name: str, card: dict, check: dict) -> dict:
    """What ``--write`` stores as the card's "checks"."""
    names = [k for k in check if k != "molecules"]
    return {"command": COMMAND, "molecules": check["molecules"], **{k: check[k] for k in names},
            "tolerance": {k: tolerance(name, k, check[k]) for k in names},
            "test_metrics": {k: card["test_metrics"][k] for k in names},
            "note": f"{NOTES[name]}; test_metrics: the card's means over its held-out records, for scale"}


def disagreements(card: dict, check: dict) -> list[str]:
    """Where ``check`` differs from the card's stored checks by more than their tolerance."""
    stored = card.get("checks")
    if stored is None:
        return ["the card has no checks (run with --write)"]
    if stored["molecules"] != check["molecules"]:
        return [f"molecules {stored['molecules']} in the card, {check['molecules']} here"]
    out = []
    for k, values in check.items():
        if k == "molecules":
            continue
        if k not in stored:
            out.append(f"{k}: not in the card's checks")
        elif np.any(np.abs(np.subtract(values, stored[k])) > stored["tolerance"][k]):
            out.append(f"{k}: {values} here, {stored[k]} in the card (tolerance {stored['tolerance'][k]})")
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="store the values in the cards")
    parser.add_argument("--models", nargs="+", default=list(MOLECULES), choices=list(MOLECULES))
    args = parser.parse_args()
    print(f"{'model':17s} {'metric':22s} {'molecules':17s} {'check':>15s} {'card test':>10s} {'ratio':>6s} "
          f"{'stored':>15s} {'tolerance':>9s}")
    failed = False
    for name in args.models:
        path = os.path.join(api.pretrained_dir(), name, "card.json")
        with open(path) as f:
            card = json.load(f)
        check = run_check(name)
        stored = card.get("checks", {})
        for k, values in check.items():
            if k == "molecules":
                continue
            fmt = lambda vs: " ".join(f"{v:.5g}" for v in vs) if vs else "-"  # noqa: E731
            ratio = np.mean(values) / card["test_metrics"][k]
            print(f"{name:17s} {k:22s} {','.join(check['molecules']):17s} {fmt(values):>15s} "
                  f"{card['test_metrics'][k]:10.4g} {ratio:6.2f} {fmt(stored.get(k)):>15s} "
                  f"{stored.get('tolerance', {}).get(k, float('nan')):9.2g}")
        if args.write:
            card["checks"] = card_entry(name, card, check)
            with open(path, "w") as f:
                json.dump(card, f, indent=1)
        else:
            for problem in disagreements(card, check):
                print(f"  {name}: {problem}")
                failed = True
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
