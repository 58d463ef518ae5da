"""Held-out density NMAE of grid models on organic molecules beyond QM9: RDKit conformers, per molecule.

Fourteen molecules in no training set and not at QM9's geometries (RDKit ETKDG + MMFF conformers, seed 0):
nine with 10-14 heavy atoms (more than any QM9 molecule), most of them aromatic, and five smaller ones whose
canonical SMILES the script checks against every record of the training data (``--train-data``), so none
is a training molecule. For each molecule PySCF's density (the model's level of theory) is computed once;
each model predicts with ``api.predict`` on its own box and is compared with PySCF on that same box
(``training.metrics.nmae_percent``, as in training); rho0, the atomic guess, on the same box is the
no-learning baseline. The FNO predicts on its training box only: a molecule that does not fit it with the
card's margin is reported as outside the model's domain, not scored.

Results are stored after every molecule and reused on a rerun (keyed by model directory and molecule), so a
killed run resumes.

Run: python experiments/heldout_organics.py --models DIR_OR_NAME [...] [--train-data ~/dft_data/qm9_grid]
  -> experiments/results/heldout_organics.json and heldout_organics.png (NMAE per molecule, bars per model)
"""

import argparse
import json
import os
import time

import numpy as np

from dft_operators import api, molecule, reference
from dft_operators.data.molecule_specs import canonical_smiles
from dft_operators.io.dataset import Dataset
from dft_operators.training import metrics

HERE = os.path.dirname(os.path.abspath(__file__))
# name -> SMILES: 10-14 heavy atoms (beyond QM9's nine), then smaller molecules checked against the training data
MOLECULES = {
    "caffeine": "Cn1cnc2c1c(=O)n(C)c(=O)n2C",
    "aspirin": "CC(=O)Oc1ccccc1C(=O)O",
    "paracetamol": "CC(=O)Nc1ccc(O)cc1",
    "phenylalanine": "NC(Cc1ccccc1)C(=O)O",
    "tryptamine": "NCCc1c[nH]c2ccccc12",
    "naphthalene": "c1ccc2ccccc2c1",
    "quinoline": "c1ccc2ncccc2c1",
    "methyl benzoate": "COC(=O)c1ccccc1",
    "hexanamide": "CCCCCC(N)=O",
    "indole": "c1ccc2[nH]ccc2c1",
    "benzamide": "NC(=O)c1ccccc1",
    "nicotinamide": "NC(=O)c1cccnc1",
    "glycylglycine": "NCC(=O)NCC(=O)O",
    "2-phenylethanol": "OCCc1ccccc1",
}


def check_not_in_training(train_data: str | None) -> None:
    """Refuses a molecule whose canonical SMILES is among the training data's molecules."""
    if not train_data:
        return
    seen = set(Dataset(train_data).molecule_keys())
    clash = [name for name, smi in MOLECULES.items() if canonical_smiles(smi) in seen]
    if clash:
        raise SystemExit(f"error: {', '.join(clash)} in the training data {train_data}: not held out")


def score(model: api.Model, mol, state, rho0_cache: dict) -> dict:
    """NMAE (percent) of the model's and of rho0's density against PySCF's on the model's prediction box."""
    try:
        prediction = api.predict(model, mol)
    except ValueError as err:  # outside the model's domain (the FNO's fixed box)
        return {"outside": str(err)}
    grid = prediction["grid"]
    ks = reference.density_on_box(state.density, grid).astype(np.float32)[None]
    key = (grid.shape, tuple(np.round(grid.origin, 6)))
    if key not in rho0_cache:
        rho0 = reference.density_on_box(reference.atomic_guess(mol, model.level), grid).astype(np.float32)[None]
        rho0_cache[key] = float(metrics.nmae_percent(rho0, ks, grid.voxel_volume)[0])
    return {"nmae_percent": float(metrics.nmae_percent(prediction["density"][None], ks, grid.voxel_volume)[0]),
            "rho0_nmae_percent": rho0_cache[key], "box_shape": int(grid.shape[0]), "seconds": prediction["seconds"]}


def plot(path: str, results: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(MOLECULES)
    models = list(results)
    fig, ax = plt.subplots(figsize=(10, 4))
    width = 0.8 / (len(models) + 1)
    for i, label in enumerate(models):
        values = [results[label].get(n, {}).get("nmae_percent", np.nan) for n in names]
        ax.bar(np.arange(len(names)) + i * width, values, width, label=label)
    rho0 = [next((results[m][n]["rho0_nmae_percent"] for m in models if "rho0_nmae_percent" in results[m].get(n, {})),
                 np.nan) for n in names]
    ax.bar(np.arange(len(names)) + len(models) * width, rho0, width, label="rho0 (atomic guess)", color="gray")
    ax.set_xticks(np.arange(len(names)) + 0.4 - width / 2, names, rotation=40, ha="right", fontsize=8)
    ax.set_ylabel("density NMAE vs PySCF (%)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", required=True, help="model directories or shipped names")
    parser.add_argument("--train-data", help="the models' training dataset: refuse molecules it holds")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "heldout_organics.json"))
    args = parser.parse_args()
    check_not_in_training(args.train_data)
    report = {"molecules": MOLECULES, "results": {}}
    if os.path.exists(args.out):
        with open(args.out) as f:
            report["results"] = json.load(f).get("results", {})
    models = {label: api.load_model(label) for label in args.models}
    levels = {json.dumps(m.level, sort_keys=True, default=str) for m in models.values()}
    if len(levels) > 1:
        raise SystemExit(f"error: the models have different levels of theory ({levels}): compare one level at a time")
    level = next(iter(models.values())).level
    for name, smiles in MOLECULES.items():
        todo = [label for label in models if name not in report["results"].get(label, {})]
        if not todo:
            continue
        mol = molecule.from_smiles(smiles, name=name)
        start = time.perf_counter()
        state = reference.run_ks(mol, level)
        pyscf_seconds = time.perf_counter() - start
        rho0_cache = {}
        for label in todo:
            row = {**score(models[label], mol, state, rho0_cache), "heavy_atoms": int(np.sum(np.asarray(mol.numbers) > 1)),
                   "pyscf_seconds": pyscf_seconds}
            report["results"].setdefault(label, {})[name] = row
            shown = f"{row['nmae_percent']:.2f} % (rho0 {row['rho0_nmae_percent']:.2f} %)" if "nmae_percent" in row \
                else "outside the model's box"
            print(f"{name:16s} {label}: {shown}", flush=True)
        with open(args.out, "w") as f:
            json.dump(report, f, indent=1)
    for label, rows in report["results"].items():
        scored = [r["nmae_percent"] for r in rows.values() if "nmae_percent" in r]
        if scored:
            print(f"{label}: mean NMAE {np.mean(scored):.2f} % over {len(scored)} molecules "
                  f"({len(rows) - len(scored)} outside its box)")
    plot(os.path.splitext(args.out)[0] + ".png", report["results"])


if __name__ == "__main__":
    main()
