"""A trained model's card metrics recomputed on one molecule: does an installed model still do what its card says?

The card's ``test_metrics`` are means over 10-50 generated held-out records; these functions compute the same
metrics, by the same definitions, on one molecule through the public API and PySCF references, in seconds:

  fno, deepscf   nmae_percent: 100 int|rho - rho_KS| / int rho_KS on the box ``api.predict`` predicts on,
                 rho_KS PySCF's density on that box (``training.metrics.nmae_percent``, as training).
  kineticnet     energy_error_kcal_mol |T[rho_KS] - T_s| and derivative_rmse (Hartree) of the learned kinetic
                 energy at PySCF's ground-state density on the card's quadrature level (``api.evaluate`` of a
                 one-record dataset).
  densnet        nmae_percent against the Kohn-Sham density on PySCF's level-3 quadrature and
                 energy_error_kcal_mol |E_model - E_KS|.

``experiments/card_checks.py --write`` stores them in the shipped cards as ``"checks"``; a test recomputes them.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np

from dft_operators import api, kinds, reference, units
from dft_operators.molecule import Molecule


def grid_nmae(model: api.Model, molecule: Molecule) -> dict[str, float]:
    """NMAE (percent) of ``api.predict``'s density against PySCF's on the same box."""
    from dft_operators.training import metrics

    prediction = api.predict(model, molecule)
    grid = prediction["grid"]
    ks = reference.density_on_box(reference.run_ks(molecule, model.level).density, grid).astype(np.float32)
    return {"nmae_percent": float(metrics.nmae_percent(prediction["density"][None], ks[None], grid.voxel_volume)[0])}


def kinetic_errors(model: api.Model, molecule: Molecule) -> dict[str, float]:
    """|T - T_s| (kcal/mol) and the derivative RMSE (Hartree) at the KS ground state, by ``api.evaluate``."""
    from dft_operators.data.generate import GenerationSettings, generate

    settings = GenerationSettings(kinds=("quadrature",), level=model.level, grid_level=model.card["grid_level"],
                                  n_conformers=1, displacement=0.0, rotate=False)
    with tempfile.TemporaryDirectory() as tmp:
        generate([molecule], os.path.join(tmp, "data"), settings, progress=False)
        result = api.evaluate(model, os.path.join(tmp, "data"))
    return {k: float(result[k]) for k in ("energy_error_kcal_mol", "derivative_rmse")}


def densnet_errors(model: api.Model, molecule: Molecule) -> dict[str, float]:
    """Density NMAE (percent) against the KS density on the level-3 quadrature and |E - E_KS| (kcal/mol)."""
    from dft_operators.workflows import densnet  # e3nn-jax: loaded only for a DenSNet model
    state = reference.run_ks(molecule, model.level)
    points, weights = reference.molecular_quadrature(molecule, model.level, 3)
    ks = reference.density_at_points(state.density, points)
    coefficients, energy = densnet.forward(model.card, model.module, model.params, molecule)
    rho = densnet.density_at(model.card, molecule, coefficients, points)
    return {"nmae_percent": float(100.0 * weights @ np.abs(rho - ks) / (weights @ ks)),
            "energy_error_kcal_mol": abs(energy - state.energy) * units.HARTREE_TO_KCAL_PER_MOL}


def check_molecule(name: str) -> Molecule:
    """A check molecule by its name in a card: a built-in molecule, or else a SMILES (held-out QM9 molecules of
    QM9-trained models), as its seed-0 RDKit conformer."""
    from dft_operators import molecule

    return molecule.builtin(name) if name in molecule.builtin_names() else molecule.from_smiles(name, seed=0)


def check(model: api.Model | str, molecule: Molecule) -> dict[str, float]:
    """The card metrics of ``model`` (loaded, shipped name or directory) on one molecule (module docstring)."""
    model = model if isinstance(model, api.Model) else api.load_model(model)
    return globals()[kinds.kind(model.kind).check](model, molecule)
