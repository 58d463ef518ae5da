"""Train small, predict big: DeepSCF (trained on 16 Bohr boxes) on chains too long for its training box.

The U-Net is translation-equivariant, so ``api.predict`` gives it the smallest larger box that holds the
molecule with a 5 Bohr margin. For each molecule: NMAE of the model and of rho0 against PySCF on that box,
SCF cycles from the model's guess and from minao, and a PNG slice. Also how much a larger box changes a
prediction that fits the training box (the zero padding of the U-Net's features at the box faces).

    python experiments/deepscf_predict_big.py [--model deepscf-small] [--molecules hexane octatetraene]

Writes experiments/results/deepscf_predict_big.json and deepscf_big_<molecule>.png.
"""

import argparse
import json
import os

import numpy as np
from density_slices import plot_slices

from dft_operators import api, molecule, reference
from dft_operators.scf_guess import scf_from_guess
from dft_operators.training import metrics

HERE = os.path.dirname(os.path.abspath(__file__))


def big_molecule(model: api.Model, name: str) -> dict:
    """Density errors and SCF cycles of one molecule predicted on an enlarged box."""
    mol = molecule.builtin(name)
    prediction = api.predict(model, mol)
    grid = prediction["grid"]
    state = reference.run_ks(mol, model.level)
    ref = reference.density_on_box(state.density, grid)
    rho0 = reference.density_on_box(reference.atomic_guess(mol, model.level), grid)
    nmae = lambda rho: float(metrics.nmae_percent(rho[None], ref[None], grid.voxel_volume)[0])  # noqa: E731
    plot_slices(os.path.join(HERE, "results", f"deepscf_big_{name}.png"), grid,
                {"PySCF": ref, "DeepSCF": prediction["density"], "rho0 - PySCF": rho0 - ref,
                 "DeepSCF - PySCF": prediction["density"] - ref}, title=f"{name} on a {grid.shape[0]}^3 box")
    extent = float(np.ptp(mol.positions, axis=0).max())
    return {"molecule": name, "atoms": mol.n_atoms, "extent_bohr": extent, "box_shape": list(grid.shape),
            "nmae_percent": nmae(prediction["density"]), "rho0_nmae_percent": nmae(rho0),
            "cycles": {"model": scf_from_guess(mol, model)["cycles"], "minao": state.cycles}}


def box_sensitivity(model: api.Model, name: str, larger: int) -> dict:
    """NMAE (percent) between predictions of one molecule on the training box and on a larger one (overlap)."""
    mol = molecule.builtin(name)
    small = api.predict(model, mol, box_shape=model.card["grid"]["box_shape"])
    large = api.predict(model, mol, box_shape=larger)
    offset = (larger - small["grid"].shape[0]) // 2
    inner = large["density"][offset:-offset, offset:-offset, offset:-offset]
    dv = small["grid"].voxel_volume
    return {"molecule": name, "boxes": [small["grid"].shape[0], larger],
            "nmae_between_percent": float(metrics.nmae_percent(inner[None], small["density"][None], dv)[0])}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="deepscf-small")
    parser.add_argument("--molecules", nargs="+", default=["hexane", "octatetraene"])
    parser.add_argument("--out", default=os.path.join(HERE, "results", "deepscf_predict_big.json"))
    args = parser.parse_args()
    model = api.load_model(args.model)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    rows = [big_molecule(model, n) for n in args.molecules]
    sensitivity = box_sensitivity(model, "acetone", model.card["grid"]["box_shape"] + 16)
    for r in rows:
        print(f"{r['molecule']:14s} box {r['box_shape'][0]}^3  NMAE {r['nmae_percent']:.2f} % (rho0 "
              f"{r['rho0_nmae_percent']:.2f} %)  cycles model {r['cycles']['model']} minao {r['cycles']['minao']}")
    print(json.dumps(sensitivity))
    with open(args.out, "w") as f:
        json.dump({"model": model.name, "training_box": model.card["grid"], "molecules": rows,
                   "box_sensitivity": sensitivity}, f, indent=1)


if __name__ == "__main__":
    main()
