"""Makes a shipped DenSNet model ``densnet-<molecule>``: the molecule's data, training, held-out test, copy
into the package. The config's "data" section names the molecule (SMILES, name) and its conformers.

Ethanol geometries: RDKit conformers with the C-C-O-H torsion gauche+, gauche- and trans (seeds in the
config), each randomly displaced (Gaussian, ``displacement`` Bohr per coordinate) and rotated; all-electron
LDA/def2-svp with forces, dipoles and Coulomb-fitted density coefficients in the config's auxiliary basis
(``etb:cc-pvdz``, the even-tempered products of cc-pVDZ: its fit is 0.56 % NMAE from the Kohn-Sham density
of ethanol, def2-universal-jkfit's 0.96 %). The test set has other displacements (another seed). Every step
resumes after a kill. Ethanethiol (C-C-S-H gauche+, gauche-, trans) and resorcinol (the three planar O-H
orientations: anti-anti, syn-syn, syn-anti) have their configs beside ethanol's (``densnet_<molecule>.json``).
The shipped ethanethiol model is one run of ``densnet_ethanethiol_union.json`` (both networks jointly from
scratch, the density loss weighted 10x, on displaced and torsion-twisted geometries together); the shipped
ethanol model comes from four runs, each continuing the last (``--init-from``): ``densnet_ethanol_union.json``
from scratch, then ``densnet_ethanol_multiscale_finetune.json`` and ``..._finetune2.json`` with near-minimum
geometries added, then ``densnet_ethanol_force5_finetune.json`` with the force loss weighted 5x (the earlier
ethanol models: one run of ``densnet_ethanol_dw10.json``; before it the density_first, refined and refined2
chain); the default config trains jointly with weight 1 (1.8 % density NMAE instead of 0.96 %). The shipped
resorcinol model starts from the shipped ethanol one (same architecture and elements H, C, O): 60 epochs of
``densnet_resorcinol_from_ethanol.json`` (``--init-from dft_operators/pretrained/densnet-ethanol``), then 150 of
``..._from_ethanol2.json`` from that. ``data.torsion``
(degrees) also twists the rotatable bonds of each displaced geometry (``generate --torsion``); a list of
torsions makes the data once per value and trains on their union (``io.dataset.merge``). ``data.parts`` adds
more parts to that union, each a dict with a "name" that overrides keys of the data section (a smaller
``displacement`` with other seeds samples the region around the minimum that low-temperature MD visits).
Run: python experiments/train_shipped_densnet.py [--config F] [--workdir D] [--only-data] [--init-from MODEL]
Results go to experiments/results/<config name>.json and <config name>_learning_curve.png; with
``task.density_epochs`` the density network's NMAE after its own stage (before the joint one) is reported too.
"""

import json
import os

import numpy as np

from dft_operators import api, molecule, reference
from dft_operators.data.generate import GenerationSettings, generate
from dft_operators.io import checkpoint, dataset
from dft_operators.io.dataset import Dataset
from dft_operators.workflows import densnet
import common

def data_settings(data: dict, split: str) -> GenerationSettings:
    """The generation settings of the train or test split of a config's "data" section (or of one part)."""
    return GenerationSettings(
        kinds=("coefficients",),
        level=reference.Level(xc=data["xc"], basis=data["basis"], pseudo=None, aux_basis=data["aux_basis"]),
        n_conformers=data[f"{split}_conformers"], displacement=data["displacement"], forces=True,
        torsion=data.get("torsion", 0.0), seed=data[f"{split}_seed"])


def base_conformers(data: dict) -> list[molecule.Molecule]:
    """The RDKit conformers that the random displacements start from."""
    return [molecule.from_smiles(data["smiles"], seed=s, name=data["name"]) for s in data["conformer_seeds"]]


def data_parts(data: dict) -> dict[str, dict]:
    """The parts whose union is the dataset, name -> data section: one per torsion of a list
    (``torsion<T>``) and one per entry of ``data["parts"]``; {} for a single dataset."""
    torsions = data.get("torsion", 0.0)
    if not isinstance(torsions, list) and not data.get("parts"):
        return {}
    common_data = {k: v for k, v in data.items() if k not in ("parts", "torsion")}  # a part's torsion: 0
    parts = {f"torsion{t:g}": {**common_data, "torsion": t}
             for t in (torsions if isinstance(torsions, list) else [torsions])}
    for part in data.get("parts", []):
        parts[part["name"]] = {**common_data, **{k: v for k, v in part.items() if k != "name"}}
    return parts


def make_data(data: dict, workdir: str, workers: int) -> tuple[dict, dict]:
    """Generates (or resumes) the train and test sets; returns (paths, generation summaries). With parts
    (``data_parts``) each split is made once per part (``<split>-<part>``) and merged into ``<split>``."""
    mols = base_conformers(data)
    parts = data_parts(data)
    paths = {split: os.path.join(workdir, split) for split in ("train", "test")}
    summaries = {}
    for split, path in paths.items():
        if not parts:
            summaries[split] = generate(mols, path, data_settings(data, split), workers=workers)
            continue
        part_paths = {name: os.path.join(workdir, f"{split}-{name}") for name in parts}
        summaries[split] = [generate(mols, part_paths[name], data_settings(part, split), workers=workers)
                            for name, part in parts.items()]
        dataset.merge(list(part_paths.values()), path)
    return paths, summaries


def main():
    parser = common.config_parser(__doc__, "densnet_ethanol.json", "runs/densnet_ethanol")
    parser.add_argument("--only-data", action="store_true", help="generate the datasets and stop")
    parser.add_argument("--no-ship", action="store_true", help="do not copy the model into the package")
    parser.add_argument("--init-from", help="start from this model's weights (api.train's init_from)")
    args = parser.parse_args()
    config, data = common.read_config(args.config)
    os.makedirs(args.workdir, exist_ok=True)
    paths, generation = make_data(data, args.workdir, args.workers)
    print(json.dumps({"generation": generation}))
    if args.only_data:
        return
    model_dir = os.path.join(args.workdir, "model")
    summary = api.train("densnet", paths["train"], model_dir, config, init_from=args.init_from)
    test = api.evaluate(model_dir, paths["test"])
    nmae = density_nmae(model_dir, paths["test"], data["nmae_records"])
    test.update(nmae_percent=nmae["model_vs_ks"], nmae_vs_fit_percent=nmae["model_vs_fit"],
                fit_nmae_percent=nmae["fit_vs_ks"], atoms_nmae_percent=nmae["atoms_vs_ks"],
                nmae_records=nmae["records"])
    stage_dir = os.path.join(model_dir, "density_first")
    if os.path.isdir(stage_dir):  # the density network before the joint training, against the same fits
        stage, ds = api.load_model(stage_dir), Dataset(paths["test"])
        test["density_first_nmae_vs_fit_percent"] = densnet.records_nmae(
            stage.card, stage.module, stage.params, ds, ds.ids[:data["nmae_records"]], grid_level=3)
    if not args.no_ship:
        checkpoint.export_model(
            model_dir, os.path.join(api.pretrained_dir(), f"densnet-{data['name']}"), test_metrics=test,
            test_molecules=[data["name"]],
            description=f"DenSNet for {data['name']}: density coefficients ({data['aux_basis']}), energy, forces, "
                        "dipole; LDA/def2-svp all-electron")
    common.write_results(args.config, model_dir, {"generation": generation, "training": summary, "test": test,
                                                  "config": {**config, "data": data}})
    print(json.dumps({"test": test, "epochs": summary["epochs"]}))


def density_nmae(model_dir: str, test_data: str, n_records: int) -> dict:
    """Mean density NMAEs (``workflows.densnet.density_nmae``, percent) over the first test records."""
    model, ds = api.load_model(model_dir), Dataset(test_data)
    rows = []
    for rid in ds.ids[:n_records]:
        mol = molecule.Molecule.from_record(ds.record(rid))
        rows.append(densnet.density_nmae(model.card, model.module, model.params, mol))
    return {k: float(np.mean([row[k] for row in rows])) for k in rows[0]} | {"records": len(rows)}


if __name__ == "__main__":
    main()
