"""Size extrapolation of DenSNet on a homologous chain: train on short alkanes, test on longer ones.

The DenSNet paper trains on 1-6 thiophene units and predicts 12. Here the chain is H(CH2)nH: train on
methane to butane (n = 1-4), test on hexane and octane (n = 6, 8), all-electron LDA/def2-svp with forces.
Why alkanes: a saturated chain is the nearsighted case the local (cutoff) model is built for, like the
repeat unit of the paper's chain, and its members stay small enough for all-electron PySCF with forces on
two CPU cores (octane: 26 atoms, about a minute per geometry; twelve thiophene units would take hours).
Every step resumes after a kill.
Run: python experiments/densnet_chain.py [--config F] [--workdir D]
Writes experiments/results/densnet_alkanes.json (per test molecule: density NMAE, energy error per atom,
force MAE, dipole error).
"""

import json
import os

import numpy as np

from dft_operators import api, molecule
from dft_operators.data.generate import generate
from dft_operators.io.dataset import Dataset
from dft_operators.workflows import densnet
import common
from train_shipped_densnet import data_settings

HERE = os.path.dirname(os.path.abspath(__file__))


def per_molecule(model_dir: str, test_data: str, nmae_records: int) -> dict:
    """Test metrics per molecule name, energy errors also per atom (kcal/mol/atom)."""
    model, ds = api.load_model(model_dir), Dataset(test_data)
    names = [str(n) for n in ds.attribute("name")]
    out = {}
    for name in sorted(set(names)):
        ids = [i for i, n in zip(ds.ids, names) if n == name]
        metrics = api.evaluate(model, test_data, ids)
        r = ds.record(ids[0])
        metrics["energy_error_kcal_mol_per_atom"] = metrics["energy_error_kcal_mol"] / len(r["numbers"])
        nmae = []
        for rid in ids[:nmae_records]:
            mol = molecule.Molecule.from_record(ds.record(rid))
            nmae.append(densnet.density_nmae(model.card, model.module, model.params, mol))
        metrics["density_nmae"] = {k: float(np.mean([x[k] for x in nmae])) for k in nmae[0]}
        out[name] = metrics
    return out


def main():
    parser = common.config_parser(__doc__, "densnet_alkanes.json", "runs/densnet_alkanes", workers=1)
    parser.add_argument("--only-data", action="store_true", help="generate the datasets and stop")
    args = parser.parse_args()
    config, data = common.read_config(args.config)
    os.makedirs(args.workdir, exist_ok=True)
    paths, generation = {}, {}
    for split in ("train", "test"):
        mols = [molecule.from_smiles(s, name=n) for n, s in data[f"{split}_smiles"].items()]
        paths[split] = os.path.join(args.workdir, f"{split}")
        generation[split] = generate(mols, paths[split], data_settings(data, split), workers=args.workers)
    if args.only_data:
        return
    model_dir = os.path.join(args.workdir, "model")
    summary = api.train("densnet", paths["train"], model_dir, config)
    test = per_molecule(model_dir, paths["test"], data["nmae_records"])
    result = {"generation": generation, "training": summary, "test": test, "config": {**config, "data": data}}
    with open(os.path.join(HERE, "results", "densnet_alkanes.json"), "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps({"test": test}))


if __name__ == "__main__":
    main()
