"""Makes the shipped model ``kineticnet-small``: data, training, held-out test, copy into the package.

Two-electron molecules (H2, HeH+, H3+) at random geometries under random external potentials, all-electron
LDA in def2-svp on PySCF's level-1 quadrature; the test set has other geometries and potentials (another
seed). The classical functionals are evaluated on the same test records beside the model. Every step
resumes after a kill. Run: python experiments/train_shipped_kineticnet.py [--config F] [--workdir D]
Results go to experiments/results/<config name>.json and <config name>_learning_curve.png.
"""

import argparse
import dataclasses
import json
import os
import shutil

import jax

from dft_operators import api, models, molecule, physics, reference
from dft_operators.data.generate import GenerationSettings, generate
from dft_operators.io import checkpoint
from dft_operators.io.dataset import Dataset
from dft_operators.training import loop
from dft_operators.workflows import kinetic

HERE = os.path.dirname(os.path.abspath(__file__))
SHIPPED = "kineticnet-small"


def data_settings(data: dict, split: str) -> GenerationSettings:
    """The generation settings of the train or test split of a config's "data" section."""
    return GenerationSettings(
        kinds=("quadrature",), level=reference.Level(basis=data["basis"], pseudo=None), grid_level=data["grid_level"],
        n_conformers=data[f"{split}_conformers"], displacement=data["displacement"],
        random_potential=data["random_potential"], seed=data[f"{split}_seed"])


def classical_metrics(model_config, test_data: str) -> dict:
    """Test metrics of the classical functionals: KineticNet with their coefficients and no correction."""
    ds = Dataset(test_data)
    out = {}
    for name, (tf, vw) in physics.CLASSICAL.items():
        module = models.create_model("kineticnet", dataclasses.replace(model_config, tf_coefficient=tf,
                                                                         vw_coefficient=vw))
        objective, arrays = kinetic.evaluation_data({"level": ds.metadata["level"], "task": {}}, ds, ds.ids, module)
        params = objective.init(jax.random.PRNGKey(0), arrays)  # the last layer starts at zero: the baseline
        out[name] = loop.evaluate_objective(objective, params, arrays, batch_size=4)
        out[name].pop("loss")
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=os.path.join(HERE, "configs", "kineticnet_small.json"))
    parser.add_argument("--workdir", default="runs/kineticnet_small")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-ship", action="store_true", help="do not copy the model into the package")
    args = parser.parse_args()
    with open(args.config) as f:
        config = json.load(f)
    data = config.pop("data")
    os.makedirs(args.workdir, exist_ok=True)
    mols = molecule.builtin_set(data["molecules"])
    paths = {split: os.path.join(args.workdir, f"{split}.h5") for split in ("train", "test")}
    generation = {split: generate(mols, path, data_settings(data, split), workers=args.workers, progress=False)
                  for split, path in paths.items()}
    model_dir = os.path.join(args.workdir, "model")
    summary = api.train("kineticnet", paths["train"], model_dir, config)
    test = api.evaluate(model_dir, paths["test"])
    baselines = classical_metrics(api.TrainSetup.resolve("kineticnet", config).model_config, paths["test"])
    card = checkpoint.load_card(model_dir)
    card.update(description="KineticNet, Kohn-Sham kinetic energy of two-electron molecules (H2, HeH+, H3+), "
                            "LDA/def2-svp, for orbital-free DFT",
                test_metrics=test, test_molecules=[m.name for m in mols])
    card = {k: v for k, v in card.items() if k not in ("format", "version", "saved")}
    if not args.no_ship:
        target = os.path.join(os.path.dirname(api.__file__), "pretrained", SHIPPED)
        shutil.rmtree(target, ignore_errors=True)
        os.makedirs(target)
        shutil.copytree(os.path.join(model_dir, "params"), os.path.join(target, "params"))
        checkpoint.save_card(target, card)
    name = os.path.splitext(os.path.basename(args.config))[0]
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    shutil.copy(os.path.join(model_dir, "learning_curve.png"), os.path.join(HERE, "results", f"{name}_learning_curve.png"))
    result = {"generation": generation, "training": summary, "test": test, "test_classical": baselines,
              "config": {**config, "data": data}, "log": checkpoint_log(model_dir)}
    with open(os.path.join(HERE, "results", f"{name}.json"), "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps({"test": test, "test_classical": baselines, "epochs": summary["epochs"]}))


def checkpoint_log(model_dir: str) -> list[dict]:
    """The per-epoch log of the training run (the learning curve's numbers)."""
    with open(os.path.join(model_dir, "log.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


if __name__ == "__main__":
    main()
