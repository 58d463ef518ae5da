"""Makes the shipped model ``densnet-ethanol``: ethanol data, training, held-out test, copy into the package.

Ethanol geometries: RDKit conformers with the C-C-O-H torsion gauche+, gauche- and trans (seeds in the
config), each randomly displaced (Gaussian, ``displacement`` Bohr per coordinate) and rotated; all-electron
LDA/def2-svp with forces, dipoles and Coulomb-fitted density coefficients (def2-universal-jkfit). The test
set has other displacements (another seed). Every step resumes after a kill.
Run: python experiments/train_shipped_densnet.py [--config F] [--workdir D] [--only-data]
Results go to experiments/results/<config name>.json and <config name>_learning_curve.png.
"""

import argparse
import json
import os
import shutil

from dft_operators import api, molecule, reference
from dft_operators.data.generate import GenerationSettings, generate
from dft_operators.io import checkpoint

HERE = os.path.dirname(os.path.abspath(__file__))
SHIPPED = "densnet-ethanol"


def data_settings(data: dict, split: str) -> GenerationSettings:
    """The generation settings of the train or test split of a config's "data" section."""
    return GenerationSettings(
        kinds=("coefficients",), level=reference.Level(xc=data["xc"], basis=data["basis"], pseudo=None),
        n_conformers=data[f"{split}_conformers"], displacement=data["displacement"], forces=True,
        seed=data[f"{split}_seed"])


def base_conformers(data: dict) -> list[molecule.Molecule]:
    """The RDKit conformers that the random displacements start from."""
    return [molecule.from_smiles(data["smiles"], seed=s, name=data["name"]) for s in data["conformer_seeds"]]


def make_data(data: dict, workdir: str, workers: int) -> tuple[dict, dict]:
    """Generates (or resumes) the train and test files; returns (paths, generation summaries)."""
    mols = base_conformers(data)
    paths = {split: os.path.join(workdir, f"{split}.h5") for split in ("train", "test")}
    summaries = {split: generate(mols, path, data_settings(data, split), workers=workers)
                 for split, path in paths.items()}
    return paths, summaries


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=os.path.join(HERE, "configs", "densnet_ethanol.json"))
    parser.add_argument("--workdir", default="runs/densnet_ethanol")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--only-data", action="store_true", help="generate the datasets and stop")
    parser.add_argument("--no-ship", action="store_true", help="do not copy the model into the package")
    args = parser.parse_args()
    with open(args.config) as f:
        config = json.load(f)
    data = config.pop("data")
    os.makedirs(args.workdir, exist_ok=True)
    paths, generation = make_data(data, args.workdir, args.workers)
    print(json.dumps({"generation": generation}))
    if args.only_data:
        return


if __name__ == "__main__":
    main()
