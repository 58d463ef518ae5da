"""The V2Rho-FNO paper's questions on our data (needs runs/fno_small from train_shipped_fno.py).

  rq1  zero-shot: NMAE on held-out molecules, against the atomic-density guess rho0 as a baseline
  rq2  transfer: to new conformers of training molecules, and to fluorine when no F molecule was trained on
  rq3  resolution: the model trained at 0.4 Bohr evaluated at 0.2 Bohr (same weights) against PySCF
  rq4  inputs: the potential, the atomic-density guess, or both (same short training budget)

Run: python experiments/fno_questions.py rq1 [--workdir runs/fno_small]; each writes
experiments/results/fno_<rq>.json and PNG slices of predicted vs reference density. rq3 takes any FNO:
``rq3 --model DIR --molecules NAME_OR_SMILES ... --tag rq3_qm9``.
"""

import argparse
import json
import os

import numpy as np

from dft_operators import api, model_checks, molecule, reference
from dft_operators.data.generate import GenerationSettings, generate
from dft_operators.io.dataset import Dataset
from dft_operators.training import metrics

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
RQ3_MOLECULES = ("acetone", "urea", "methylamine")
FLUORINATED = ("hydrogen-fluoride", "fluoromethane", "difluoromethane", "fluorine")
SHORT = {"preset": "default", "model": {"width": 16, "modes": 8, "n_layers": 4, "lifting_width": 32},
         "train": {"epochs": 4, "batch_size": 4, "learning_rate": 3e-3, "val_fraction": 0.1}}


def save(name: str, result: dict) -> None:
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, f"fno_{name}.json"), "w") as f:
        json.dump(result, f, indent=1, default=float)
    print(json.dumps(result, indent=1, default=float))


def plot_slices(rows: list[tuple[str, np.ndarray, np.ndarray]], path: str) -> None:
    """Mid-plane slices: reference, prediction, difference; one row per molecule."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows), 3, figsize=(9, 2.8 * len(rows)), squeeze=False)
    for (name, ref, pred), ax in zip(rows, axes):
        k = ref.shape[2] // 2
        vmax = ref[:, :, k].max()
        ax[0].imshow(ref[:, :, k].T, origin="lower", vmin=0, vmax=vmax)
        ax[1].imshow(pred[:, :, k].T, origin="lower", vmin=0, vmax=vmax)
        d = (pred - ref)[:, :, k].T
        im = ax[2].imshow(d, origin="lower", cmap="RdBu_r", vmin=-abs(d).max(), vmax=abs(d).max())
        fig.colorbar(im, ax=ax[2])
        ax[0].set_ylabel(name)
        for a, t in zip(ax, ("PySCF", "FNO", "FNO - PySCF")):
            a.set_title(t, fontsize=9)
            a.set_xticks([])
            a.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def per_molecule(model: api.Model, data: str) -> dict:
    """NMAE of the model and of rho0 per held-out record, grouped by molecule (percent)."""
    ds = Dataset(data)
    names = [str(n) for n in ds.attribute("name")]
    out = {}
    for name in sorted(set(names)):
        ids = [i for i, n in zip(ds.ids, names) if n == name]
        rho, rho0 = ds.stack("grid/rho", ids), ds.stack("grid/rho0", ids)
        dv = ds.metadata["settings"]["spacing"] ** 3
        out[name] = {"fno": api.evaluate(model, data, ids)["nmae_percent"],
                     "rho0": float(np.mean(metrics.nmae_percent(rho0, rho, dv)))}
    return out


def rq1(workdir: str) -> None:
    model = api.load_model(os.path.join(workdir, "model"))
    table = per_molecule(model, os.path.join(workdir, "test"))
    rows = []
    for name in list(table)[:3]:
        mol = molecule.builtin(name)
        pred = api.predict(model, mol)
        ref = reference.density_on_box(reference.run_ks(mol, model.level).density, pred["grid"])
        rows.append((name, ref, pred["density"]))
    plot_slices(rows, os.path.join(RESULTS, "fno_rq1_slices.png"))
    save("rq1", {"per_molecule": table, "mean_fno": np.mean([v["fno"] for v in table.values()]),
                 "mean_rho0": np.mean([v["rho0"] for v in table.values()])})


def rq2(workdir: str) -> None:
    model = api.load_model(os.path.join(workdir, "model"))
    builtin = set(molecule.builtin_names())
    train_names = [n for n in model.card["split"]["train_molecules"] if n in builtin][:6]
    conformers = os.path.join(workdir, "new_conformers")
    generate([molecule.builtin(n) for n in train_names], conformers,
             GenerationSettings(spacing=0.4, box_shape=40, n_conformers=2, displacement=0.2, seed=7), workers=2)
    new_conf = api.evaluate(model, conformers)["nmae_percent"]
    no_f = os.path.join(workdir, "model_no_fluorine")
    config = {**SHORT, "held_out": list(FLUORINATED)}
    api.train("fno", os.path.join(workdir, "train"), no_f, config)
    ds = Dataset(os.path.join(workdir, "train"))
    names = [str(n) for n in ds.attribute("name")]
    f_ids = [i for i, n in zip(ds.ids, names) if n in FLUORINATED]
    save("rq2", {"new_conformers_nmae_percent": new_conf, "conformer_displacement_bohr": 0.2,
                 "fluorine_unseen_nmae_percent": api.evaluate(no_f, ds.path, f_ids)["nmae_percent"],
                 "fluorine_molecules": list(FLUORINATED), "config": config})


def rq3(workdir: str, model_path: str | None = None, molecules=RQ3_MOLECULES, tag: str = "rq3") -> None:
    model = api.load_model(model_path or os.path.join(workdir, "model"))
    rows, table = [], {}
    for name in molecules:
        mol = model_checks.check_molecule(name)
        state = reference.run_ks(mol, model.level)
        entry = {}
        for refine in (1, 2):
            pred = api.predict(model, mol, refine=refine)
            grid = pred["grid"]
            ref = reference.density_on_box(state.density, grid)
            entry[f"spacing_{grid.spacing:.2f}"] = float(
                metrics.nmae_percent(pred["density"][None], ref[None], grid.voxel_volume)[0])
        rows.append((f"{name} (0.2 Bohr)", ref, pred["density"]))
        table[name] = entry
    plot_slices(rows, os.path.join(RESULTS, f"fno_{tag}_slices.png"))
    save(tag, {"model": model.name, "per_molecule": table, "trained_spacing_bohr": model.card["grid"]["spacing"]})


def rq4(workdir: str) -> None:
    result = {}
    for inputs in (("v_ext",), ("rho0",), ("v_ext", "rho0")):
        out = os.path.join(workdir, "rq4_" + "+".join(inputs))
        api.train("fno", os.path.join(workdir, "train"), out, {**SHORT, "task": {"inputs": list(inputs)}})
        result["+".join(inputs)] = api.evaluate(out, os.path.join(workdir, "test"))["nmae_percent"]
    save("rq4", {"test_nmae_percent": result, "config": SHORT})


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("question", choices=["rq1", "rq2", "rq3", "rq4"])
    parser.add_argument("--workdir", default="runs/fno_small")
    parser.add_argument("--model", help="rq3: this model (a directory or shipped name) instead of <workdir>/model")
    parser.add_argument("--molecules", nargs="+", default=RQ3_MOLECULES, help="rq3: built-in names or SMILES")
    parser.add_argument("--tag", default="rq3", help="rq3: results as fno_<tag>.json and fno_<tag>_slices.png")
    args = parser.parse_args()
    if args.question == "rq3":
        rq3(args.workdir, args.model, args.molecules, args.tag)
    else:
        globals()[args.question](args.workdir)


if __name__ == "__main__":
    main()
