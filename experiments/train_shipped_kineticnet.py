"""Makes the shipped model ``kineticnet-small``: data, training, held-out test, copy into the package.

Two-electron molecules (H2, HeH+, H3+) at random geometries under random external potentials, all-electron
LDA in def2-svp on PySCF's level-1 quadrature; the test set has other geometries and potentials (another
seed). The classical functionals are evaluated on the same test records beside the model. Every step
resumes after a kill. Run: python experiments/train_shipped_kineticnet.py [--config F] [--workdir D]
Results go to experiments/results/<config name>.json and <config name>_learning_curve.png.
"""

import json
import os

import jax

from dft_operators import api, molecule, physics, reference
from dft_operators.data.generate import GenerationSettings, generate
from dft_operators.io import checkpoint
from dft_operators.io.dataset import Dataset
from dft_operators.training import loop
from dft_operators.workflows import kinetic
import common

SHIPPED = "kineticnet-small"


def data_settings(data: dict, split: str) -> GenerationSettings:
    """The generation settings of the train or test split of a config's "data" section."""
    return GenerationSettings(
        kinds=("quadrature",), level=reference.Level(basis=data["basis"], pseudo=None), grid_level=data["grid_level"],
        n_conformers=data[f"{split}_conformers"], displacement=data["displacement"],
        random_potential=data["random_potential"], seed=data[f"{split}_seed"])


def classical_metrics(test_data: str) -> dict:
    """Test metrics of the classical functionals (TF, vW, TF + vW/9) on the same records."""
    ds = Dataset(test_data)
    arrays = kinetic.load_arrays(ds, ds.ids, point_cutoff=1.0, atom_cutoff=1.0)  # the graph is not used
    out = {}
    for name in physics.CLASSICAL:
        out[name] = loop.evaluate_objective(kinetic.classical_objective(name), {}, arrays, batch_size=4)
        out[name].pop("loss")
    return out


def per_record(model_dir: str, test_data: str) -> list[dict]:
    """|T - T_s| (kcal/mol) and the derivative RMSE (Hartree) of the model on every test record."""
    model, ds = api.load_model(model_dir), Dataset(test_data)
    objective = kinetic.objective(model.module, kinetic.KineticTask(**model.card["task"]))
    arrays = kinetic.load_arrays(ds, ds.ids, model.module.point_cutoff, model.module.atom_cutoff)
    metrics = jax.device_get(jax.jit(objective.per_sample)(model.params, arrays))
    names = ds.attribute("name")
    return [{"id": rid, "molecule": str(name), "energy_error_kcal_mol": float(e), "derivative_rmse": float(d)}
            for rid, name, e, d in zip(ds.ids, names, metrics["energy_error_kcal_mol"], metrics["derivative_rmse"])]


def main():
    parser = common.config_parser(__doc__, "kineticnet_small.json", "runs/kineticnet_small")
    parser.add_argument("--no-ship", action="store_true", help="do not copy the model into the package")
    args = parser.parse_args()
    config, data = common.read_config(args.config)
    os.makedirs(args.workdir, exist_ok=True)
    mols = molecule.builtin_set(data["molecules"])
    paths = {split: os.path.join(args.workdir, f"{split}") for split in ("train", "test")}
    generation = {split: generate(mols, path, data_settings(data, split), workers=args.workers, progress=False)
                  for split, path in paths.items()}
    model_dir = os.path.join(args.workdir, "model")
    summary = api.train("kineticnet", paths["train"], model_dir, config)
    test = api.evaluate(model_dir, paths["test"])
    records = per_record(model_dir, paths["test"])
    test["max_energy_error_kcal_mol"] = max(r["energy_error_kcal_mol"] for r in records)
    baselines = classical_metrics(paths["test"])
    if not args.no_ship:
        checkpoint.export_model(
            model_dir, os.path.join(api.pretrained_dir(), SHIPPED), test_metrics=test,
            test_molecules=[m.name for m in mols],
            description="KineticNet, Kohn-Sham kinetic energy of two-electron molecules (H2, HeH+, H3+), "
                        "LDA/def2-svp, for orbital-free DFT")
    common.write_results(args.config, model_dir, {"generation": generation, "training": summary, "test": test,
                                                  "test_records": records, "test_classical": baselines,
                                                  "config": {**config, "data": data}})
    print(json.dumps({"test": test, "test_classical": baselines, "epochs": summary["epochs"]}))


if __name__ == "__main__":
    main()
