"""Orbital-free DFT with the learned kinetic functional on held-out geometries, against Kohn-Sham, with the
classical functionals side by side.

The geometries are those of the test split of the training config (its test seed: not trained on), here
without a random potential. Every run starts from the superposition of atomic densities. Run:
python experiments/kineticnet_ofdft.py [--config F] [--model NAME_OR_DIR]
Writes experiments/results/kineticnet_ofdft.json, kineticnet_ofdft_errors.png and kineticnet_ofdft_density.png.
"""

import argparse
import json
import os

import numpy as np

from dft_operators import api, molecule, reference, units
from dft_operators.training.setup import read_config
from dft_operators.data.generate import make_tasks
from dft_operators.workflows import kinetic
from train_shipped_kineticnet import data_settings  # the generation settings of the training script

HERE = os.path.dirname(os.path.abspath(__file__))


def held_out_geometries(training_config: str, per_molecule: int) -> list[molecule.Molecule]:
    """The first geometries of each molecule of the test split of a KineticNet training config."""
    data = read_config(training_config)["data"]
    tasks = make_tasks(molecule.builtin_set(data["molecules"]), data_settings(data, "test"))
    out, seen = [], {}
    for task in tasks:
        seen[task.molecule.name] = seen.get(task.molecule.name, 0) + 1
        if seen[task.molecule.name] <= per_molecule:
            out.append(task.molecule)
    return out


def nmae_percent(rho, reference_rho, weights) -> float:
    return float(100 * np.sum(weights * np.abs(rho - reference_rho)) / np.sum(weights * reference_rho))


def bond_line(mol: molecule.Molecule, n: int = 241, margin: float = 3.0):
    """Points [n, 3] on the line through the first two atoms, 3 Bohr beyond each, and their offsets t [n]."""
    bond = mol.positions[1] - mol.positions[0]
    length = np.linalg.norm(bond)
    t = np.linspace(-margin, length + margin, n)
    return mol.positions[0] + t[:, None] * bond / length, t


def run_one(mol: molecule.Molecule, functionals: dict, level: reference.Level, grid_level: int) -> dict:
    """KS and every functional's OF-DFT on one geometry: energies (Hartree), errors (kcal/mol), NMAE (%), and
    the densities along the bond (H2 only)."""
    state = reference.run_ks(mol, level)
    row = {"molecule": mol.name, "positions_bohr": mol.positions.tolist(), "ks_energy": state.energy, "runs": {}}
    if mol.name == "h2":
        points, t = bond_line(mol)
        x_line, _ = reference.basis_on_points(mol, level, points)
        row["line"] = {"t": t.tolist(), "ks": np.einsum("pm,mn,pn->p", x_line, state.density.dm, x_line).tolist()}
    for name, functional in functionals.items():
        result = kinetic.solve_ofdft(mol, functional, level, grid_level)
        integrals = result["integrals"]
        x, w = integrals["basis_values"], integrals["weights"]
        rho_ks = np.einsum("pm,mn,pn->p", x, state.density.dm, x)
        row["guess_nmae_percent"] = nmae_percent(integrals["rho0"], rho_ks, w)
        row["runs"][name] = {
            "energy": result["energy"], "terms": result["terms"],
            "error_kcal_mol": (result["energy"] - state.energy) * units.HARTREE_TO_KCAL_PER_MOL,
            "guess_error_kcal_mol": (result["energies"][0] - state.energy) * units.HARTREE_TO_KCAL_PER_MOL,
            "nmae_percent": nmae_percent(result["rho"], rho_ks, w), "iterations": result["iterations"],
            "converged": result["converged"], "seconds": result["seconds"]}
        if "line" in row:
            row["line"][name] = kinetic.density_at(result, mol, level, points).tolist()
    return row


def plot(rows: list[dict], names: list[str], out_dir: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), dpi=120)
    labels = [f"{r['molecule']} #{i}" for i, r in enumerate(rows)]
    width = 0.8 / len(names)
    for k, name in enumerate(names):
        for ax, key in zip(axes, ("error_kcal_mol", "nmae_percent")):
            values = [abs(r["runs"][name][key]) for r in rows]
            ax.bar(np.arange(len(rows)) + k * width, values, width, label=name)
    for ax, title in zip(axes, ("|E - E_KS| (kcal/mol)", "density NMAE (%)")):
        ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xticks(np.arange(len(rows)) + 0.4 - width / 2, labels, rotation=45, ha="right", fontsize=7)
        ax.axhline(1.0, color="k", lw=0.8, ls="--")
        ax.grid(alpha=0.3, axis="y")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "kineticnet_ofdft_errors.png"))
    plt.close(fig)
    line = next(r["line"] for r in rows if "line" in r)
    fig, ax = plt.subplots(figsize=(5.5, 3.8), dpi=120)
    ax.plot(line["t"], line["ks"], "k-", lw=2.5, label="Kohn-Sham")
    for name in names:
        ax.plot(line["t"], line[name], lw=1.2, label=f"OF-DFT {name}")
    ax.set_xlabel("position along the H2 bond (Bohr)")
    ax.set_ylabel("rho (e/Bohr^3)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "kineticnet_ofdft_density.png"))
    plt.close(fig)


def summarise(rows: list[dict], names: list[str]) -> dict:
    """Mean and max |error| (kcal/mol) and NMAE (%) per functional, and whether every run converged."""
    out = {}
    for name in names:
        errors = np.abs([r["runs"][name]["error_kcal_mol"] for r in rows])
        nmae = np.array([r["runs"][name]["nmae_percent"] for r in rows])
        out[name] = {"mae_kcal_mol": float(errors.mean()), "max_error_kcal_mol": float(errors.max()),
                     "mean_nmae_percent": float(nmae.mean()), "max_nmae_percent": float(nmae.max()),
                     "all_converged": all(r["runs"][name]["converged"] for r in rows),
                     "mean_iterations": float(np.mean([r["runs"][name]["iterations"] for r in rows]))}
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=os.path.join(HERE, "configs", "kineticnet_ofdft.json"))
    parser.add_argument("--model", help="overrides the config's model (shipped name or directory)")
    args = parser.parse_args()
    with open(args.config) as f:
        config = json.load(f)
    if args.model:
        config["model"] = args.model
    model = api.load_model(config["model"])
    functionals = {"kineticnet": (model.module, model.params), **{name: name for name in config["classical"]}}
    geometries = held_out_geometries(os.path.join(HERE, "configs", config["training_config"]),
                                     config["geometries_per_molecule"])
    rows = [run_one(mol, functionals, model.level, config["grid_level"]) for mol in geometries]
    names = list(functionals)
    summary = summarise(rows, names)
    out_dir = os.path.join(HERE, "results")
    os.makedirs(out_dir, exist_ok=True)
    plot(rows, names, out_dir)
    with open(os.path.join(out_dir, "kineticnet_ofdft.json"), "w") as f:
        json.dump({"config": config, "summary": summary, "geometries": rows}, f, indent=1)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
