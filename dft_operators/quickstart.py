"""The quickstart: predict a molecule the shipped V2Rho-FNO never saw and compare with PySCF.

Steps: load the shipped model (or, with ``train_if_missing``, generate a small set and train a tiny
one), run PySCF's SCF for a held-out molecule at the model's level, evaluate the reference density on
the model's box, predict it with the FNO, and report the NMAE and the speedup over the SCF.
"""

from __future__ import annotations

import os
import time

import numpy as np

from dft_operators import api, molecule, reference
from dft_operators.data import molecule_specs
from dft_operators.training import metrics

SHIPPED = "v2rho-fno-qm9"
HELD_OUT = ("acetone", "urea", "methylamine")


def compare_with_pyscf(model: api.Model, mol: molecule.Molecule) -> dict:
    """NMAE (percent) of the model's density against PySCF's on the model's box, and the timings."""
    state = reference.run_ks(mol, model.level)
    api.predict(model, mol)  # compile once; the timed call below is what a user pays per molecule
    start = time.perf_counter()
    prediction = api.predict(model, mol)
    predict_seconds = time.perf_counter() - start
    grid = prediction["grid"]
    ref = reference.density_on_box(state.density, grid)
    nmae = float(metrics.nmae_percent(prediction["density"][None], ref[None], grid.voxel_volume)[0])
    return {"molecule": mol.name, "nmae_percent": nmae, "scf_seconds": state.seconds,
            "predict_seconds": predict_seconds, "speedup": state.seconds / predict_seconds,
            "n_electrons": prediction["n_electrons"], "reference_n_electrons": float(grid.integrate(ref))}


def trained_on(card: dict, mol: molecule.Molecule) -> bool:
    """Whether a model's training set holds the molecule: by name (its card's split) or by canonical SMILES
    (its card's ``molecules.train``; older cards name the molecules only)."""
    if mol.name in card.get("split", {}).get("train_molecules", []):
        return True
    trained = set(card.get("molecules", {}).get("train", []))
    return bool(trained) and molecule_specs.smiles_from_geometry(mol) in trained


def _train_small(workdir: str, progress: bool) -> str:
    from dft_operators.data.generate import GenerationSettings, generate

    data = os.path.join(workdir, "data")
    train_mols = [molecule.builtin(n) for n in ("water", "methane", "ammonia", "methanol", "formaldehyde", "ethane")]
    generate(train_mols, data, GenerationSettings(spacing=0.5, box_shape=32, n_conformers=2), progress=progress)
    out = os.path.join(workdir, "fno")
    api.train("fno", data, out, {"preset": "tiny", "train": {"epochs": 20, "val_fraction": 0.0}}, progress=progress)
    return out


def run(workdir: str = "quickstart-run", train_if_missing: bool = True, progress: bool = True) -> dict:
    """Runs the quickstart; returns {"nmae_percent", "speedup", ...} averaged over the held-out molecules."""
    names = [m["name"] for m in api.list_models()]
    if SHIPPED in names:
        model = api.load_model(SHIPPED)
    elif train_if_missing:
        os.makedirs(workdir, exist_ok=True)
        model = api.load_model(_train_small(workdir, progress))
    else:
        raise FileNotFoundError(f"the shipped model {SHIPPED} is missing; run experiments/train_shipped_qm9.py "
                                "--config experiments/configs/fno_qm9_shipped.json --name v2rho-fno-qm9")
    rows = [compare_with_pyscf(model, m) for m in map(molecule.builtin, HELD_OUT) if not trained_on(model.card, m)]
    for r in rows:
        print(f"{r['molecule']:12s} NMAE {r['nmae_percent']:6.2f} %   PySCF SCF {r['scf_seconds']:6.2f} s   "
              f"FNO {r['predict_seconds']:6.3f} s   speedup x{r['speedup']:.0f}")
    return {"model": model.name, "molecules": rows,
            "nmae_percent": float(np.mean([r["nmae_percent"] for r in rows])),
            "speedup": float(np.mean([r["speedup"] for r in rows]))}
