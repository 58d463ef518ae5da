"""DenSNet MD and PySCF harmonic IR bands against experimental gas-phase fundamentals.

The experimental fundamentals of a molecule (``experiments/data/experimental_ir.json``, each with its source)
are paired with PySCF's harmonic modes (``harmonic_ir.py``) by rank (both sorted by frequency: the usual
first assignment for a molecule whose modes do not cross), and each strong harmonic band (``strong_bands``)
is compared with its experimental partner: the harmonic frequency (LDA, no anharmonicity) and the nearest
peak of a DenSNet MD spectrum (``densnet_md_ir.py``: classical, anharmonic, at that run's temperature).
Caveats: the rank pairing can swap close modes (ethanol's 1300-1500 cm^-1 bends); a table may hold one
conformer (ethanol's: trans) where the harmonic minimum and the MD start are another (gauche), and gas-phase
fundamentals hold the anharmonicity that a harmonic LDA frequency lacks.

Run: python experiments/ir_vs_experiment.py [--molecule ethanol] [--runs densnet_ethanol_md_ir_300K ...]
  -> experiments/results/<molecule>_ir_vs_experiment.json and a printed table
"""

import argparse
import json
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def read(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def compare(harmonic: dict, experiment: dict, runs: dict[str, dict]) -> dict:
    """Per strong band: harmonic, experimental and each run's nearest MD peak (cm^-1), and the MAEs."""
    fundamentals = np.sort(experiment["fundamentals_cm1"])
    order = np.argsort(harmonic["frequencies_cm1"])
    if len(fundamentals) != len(order):
        raise SystemExit(f"error: {len(fundamentals)} experimental fundamentals for {len(order)} harmonic modes")
    rank = {int(mode): k for k, mode in enumerate(order)}
    bands = []
    for band in harmonic["strong_bands"]:
        row = {"harmonic_cm1": band["frequency_cm1"], "experiment_cm1": float(fundamentals[rank[band["mode"]]])}
        for name, run in runs.items():
            row[name] = min((p["cm1"] for p in run["peaks"]), key=lambda f: abs(f - band["frequency_cm1"]))
        bands.append(row)
    mae = {key: float(np.mean([abs(b[key] - b["experiment_cm1"]) for b in bands]))
           for key in ["harmonic_cm1", *runs]}
    within = {key: int(sum(abs(b[key] - b["experiment_cm1"]) <= 30 for b in bands)) for key in ["harmonic_cm1", *runs]}
    return {"bands": bands, "mae_vs_experiment_cm1": mae, "within_30_cm1_of_experiment": within}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--molecule", default="ethanol")
    parser.add_argument("--runs", nargs="+", default=["densnet_ethanol_md_ir_300K"],
                        help="result names of densnet_md_ir.py runs (experiments/results/<name>.json)")
    args = parser.parse_args()
    experiments = read(os.path.join(HERE, "data", "experimental_ir.json"))
    if args.molecule not in experiments:
        raise SystemExit(f"error: no experimental table for {args.molecule} in experiments/data/experimental_ir.json")
    harmonic = read(os.path.join(HERE, "results", f"{args.molecule}_harmonic_ir.json"))
    runs = {name: read(os.path.join(HERE, "results", f"{name}.json")) for name in args.runs}
    result = {"molecule": args.molecule, "source": experiments[args.molecule]["source"],
              **compare(harmonic, experiments[args.molecule], runs)}
    with open(os.path.join(HERE, "results", f"{args.molecule}_ir_vs_experiment.json"), "w") as f:
        json.dump(result, f, indent=1)
    print(f"{'harmonic':>9s} {'exp':>6s} " + " ".join(f"{n[-24:]:>24s}" for n in runs))
    for b in result["bands"]:
        print(f"{b['harmonic_cm1']:9.0f} {b['experiment_cm1']:6.0f} " + " ".join(f"{b[n]:24.0f}" for n in runs))
    print(json.dumps({k: result[k] for k in ("mae_vs_experiment_cm1", "within_30_cm1_of_experiment")}))


if __name__ == "__main__":
    main()
