"""Makes the shipped model ``v2rho-fno-small``: data, training, held-out test, copy into the package.

Every step resumes after a kill.  Run: python experiments/train_shipped_fno.py [--workdir runs/fno_small]
The resolved config and the results are written to experiments/results/fno_small.json.
"""

import argparse
import json
import os

from dft_operators import api, molecule
from dft_operators.training.setup import read_config
from dft_operators.data.generate import GenerationSettings, generate
from dft_operators.io import checkpoint
from dft_operators.quickstart import HELD_OUT, SHIPPED

HERE = os.path.dirname(os.path.abspath(__file__))
TEST_MOLECULES = HELD_OUT + ("pyridine", "glycine")
TOO_LONG = {"hexane", "pentane", "butane", "hexatriene", "octatetraene", "butadiene"}  # do not fit a 16 Bohr box
# More small CHNOF molecules (RDKit geometries, seed 0) for chemical diversity beyond the built-in set.
EXTRA_SMILES = {
    "isopropanol": "CC(C)O", "ethylamine": "CCN", "acetamide": "CC(N)=O", "trimethylamine": "CN(C)C",
    "cyclobutane": "C1CCC1", "oxirane": "C1CO1", "aziridine": "C1CN1", "ethylene-glycol": "OCCO",
    "methyl-formate": "COC=O", "propyne": "CC#C", "acrolein": "C=CC=O", "cyanogen": "N#CC#N",
    "formamidine": "NC=N", "n-methylformamide": "CNC=O", "trifluoromethane": "FC(F)F", "vinyl-fluoride": "FC=C",
    "difluoroethane": "CC(F)F", "ethanolamine": "NCCO", "pyrrole": "c1cc[nH]c1", "furan": "c1ccoc1",
    "imidazole": "c1cnc[nH]1", "formaldoxime": "C=NO", "methylglyoxal": "CC(=O)C=O", "nitrous-acid": "ON=O",
    "propanal": "CCC=O", "dimethylamine": "CNC", "methyl-isocyanide": "C[N+]#[C-]", "ketene": "C=C=O",
}
SETTINGS = dict(spacing=0.4, box_shape=40, displacement=0.1, rotate=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="runs/fno_small")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--config", default=os.path.join(HERE, "configs", "fno_small.json"))
    parser.add_argument("--conformers", type=int, default=6)
    parser.add_argument("--until-epoch", type=int, help="stop training after this epoch and ship the best so far")
    args = parser.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    pool = [m for m in molecule.builtin_set("small-organic") if m.name not in TOO_LONG]
    pool += [molecule.from_smiles(smi, seed=0, name=name) for name, smi in EXTRA_SMILES.items()]
    train_mols = [m for m in pool if m.name not in TEST_MOLECULES]
    test_mols = [molecule.builtin(n) for n in TEST_MOLECULES]
    train_data, test_data = (os.path.join(args.workdir, f) for f in ("train", "test"))
    gen = generate(train_mols, train_data, GenerationSettings(n_conformers=args.conformers, seed=0, **SETTINGS),
                   workers=args.workers)
    gen_test = generate(test_mols, test_data, GenerationSettings(n_conformers=2, seed=1, **SETTINGS),
                        workers=args.workers)
    model_dir = os.path.join(args.workdir, "model_" + os.path.splitext(os.path.basename(args.config))[0])
    summary = api.train("fno", train_data, model_dir, args.config, until_epoch=args.until_epoch)
    test = api.evaluate(model_dir, test_data)
    target = os.path.join(api.pretrained_dir(), SHIPPED)
    checkpoint.export_model(
        model_dir, target, test_metrics=test, test_molecules=list(TEST_MOLECULES),
        description="V2Rho-FNO, valence density from the screened ionic potential (16 Bohr box)")
    result = {"generation": {"train": gen, "test": gen_test}, "training": summary, "test": test,
              "config": read_config(args.config), "settings": SETTINGS}
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "fno_small.json"), "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps({"test_nmae_percent": test["nmae_percent"], "epochs": summary["epochs"]}))


if __name__ == "__main__":
    main()
