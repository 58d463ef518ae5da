"""Makes the shipped model ``deepscf-small``: training on small organic molecules, held-out test, packaging.

Data: the V2Rho-FNO's datasets (``experiments/train_shipped_fno.py``: 29 molecules x 6 rotated conformers
for training, acetone, urea, methylamine, pyridine and glycine x 2 held out; LDA, GTH valence densities,
40^3 boxes of 0.4 Bohr), reused when present, else generated with the same recipe. Every step resumes
after a kill. Run:

    python experiments/train_shipped_deepscf.py [--data runs/fno_small --workdir runs/deepscf_small]

Writes experiments/results/deepscf_small.json (resolved config, training summary, held-out NMAE of the
model and of rho0 per molecule) and deepscf_small_<molecule>.png (density slices of a held-out molecule).
"""

import argparse
import json
import os
import time

from density_slices import plot_slices
from train_shipped_fno import SETTINGS, TEST_MOLECULES, TOO_LONG

from dft_operators import api, molecule, reference
from dft_operators.training.setup import read_config
from dft_operators.data.generate import GenerationSettings, generate
from dft_operators.io import checkpoint
from dft_operators.io.dataset import Dataset
from dft_operators.training import metrics

HERE = os.path.dirname(os.path.abspath(__file__))
SHIPPED = "deepscf-small"


def datasets(data_dir: str, workers: int) -> tuple[str, str]:
    """The training and held-out datasets, generated (or completed) only when missing."""
    train, test = os.path.join(data_dir, "train"), os.path.join(data_dir, "test")
    if not os.path.exists(train):
        pool = [m for m in molecule.builtin_set("small-organic") if m.name not in TOO_LONG | set(TEST_MOLECULES)]
        generate(pool, train, GenerationSettings(n_conformers=6, seed=0, **SETTINGS), workers=workers)
    if not os.path.exists(test):
        generate([molecule.builtin(n) for n in TEST_MOLECULES], test, GenerationSettings(n_conformers=2, seed=1,
                                                                                         **SETTINGS), workers=workers)
    return train, test


def per_molecule(model_dir: str, data: str) -> dict:
    """{molecule: evaluate(...)} over the records of each molecule of a dataset."""
    ds = Dataset(data)
    names = [str(n) for n in ds.attribute("name")]
    return {name: api.evaluate(model_dir, data, [i for i, n in zip(ds.ids, names) if n == name])
            for name in sorted(set(names))}


def slices(model: api.Model, name: str, path: str) -> dict:
    """PNG of PySCF's, rho0's and the model's density of a built-in molecule; their NMAE on the model's box."""
    mol = molecule.builtin(name)
    prediction = api.predict(model, mol)
    grid = prediction["grid"]
    ref = reference.density_on_box(reference.run_ks(mol, model.level).density, grid)
    rho0 = reference.density_on_box(reference.atomic_guess(mol, model.level), grid)
    plot_slices(path, grid, {"PySCF": ref, "DeepSCF": prediction["density"], "rho0 - PySCF": rho0 - ref,
                             "DeepSCF - PySCF": prediction["density"] - ref}, title=f"{name}, plane z = centre")
    nmae = lambda rho: float(metrics.nmae_percent(rho[None], ref[None], grid.voxel_volume)[0])  # noqa: E731
    return {"molecule": name, "nmae_percent": nmae(prediction["density"]), "rho0_nmae_percent": nmae(rho0)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="runs/fno_small", help="folder of train and test")
    parser.add_argument("--workdir", default="runs/deepscf_small")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--config", default=os.path.join(HERE, "configs", "deepscf_small.json"))
    args = parser.parse_args()
    os.makedirs(args.data, exist_ok=True)
    train_data, test_data = datasets(args.data, args.workers)
    model_dir = os.path.join(args.workdir, "model")
    start = time.perf_counter()
    summary = api.train("deepscf", train_data, model_dir, args.config)
    train_seconds = time.perf_counter() - start
    test = api.evaluate(model_dir, test_data)
    target = os.path.join(api.pretrained_dir(), SHIPPED)
    checkpoint.export_model(
        model_dir, target, test_metrics=test, test_molecules=list(TEST_MOLECULES),
        description="DeepSCF U-Net, valence density as rho0 + delta from rho0 and atomic fingerprints")
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    example = slices(api.load_model(SHIPPED), TEST_MOLECULES[0],
                     os.path.join(HERE, "results", f"deepscf_small_{TEST_MOLECULES[0]}.png"))
    result = {"training": summary, "train_wall_seconds": train_seconds, "test": test,
              "test_per_molecule": per_molecule(model_dir, test_data), "slice_example": example,
              "config": read_config(args.config), "data": {"train": train_data, "test": test_data},
              "settings": SETTINGS}
    with open(os.path.join(HERE, "results", "deepscf_small.json"), "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps({"test_nmae_percent": test["nmae_percent"], "test_rho0_nmae_percent": test["rho0_nmae_percent"],
                      "epochs": summary["epochs"], "train_wall_seconds": train_seconds}))


if __name__ == "__main__":
    main()
