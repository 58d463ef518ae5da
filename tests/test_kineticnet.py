"""KineticNet: invariance under rotations of molecule and grid (with a control that must fail), derivatives
against finite differences, the loss of the exact two-electron functional, and a few training steps."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dft_operators import api, molecule, reference
from dft_operators.data.conformers import random_rotation
from dft_operators.io.dataset import Dataset
from dft_operators.models import create_model, model_config
from dft_operators.models.kineticnet import kinetic_energy
from dft_operators.nn.graph import build_graph
from dft_operators.training.loop import TrainState, evaluate_objective, make_steps
from dft_operators.workflows import kinetic

CONFIG = model_config("kineticnet", preset="tiny")


@pytest.fixture(scope="module")
def h3():
    """H3+ (LDA/def2-svp) and its fields on PySCF's level-0 grid (1504 points)."""
    mol = molecule.builtin("h3+")
    return mol, reference.quadrature_fields(reference.run_ks(mol, reference.ALL_ELECTRON), grid_level=0)


@pytest.fixture(scope="module")
def model(h3):
    """The tiny model with a random (non-zero) last layer, so that the network part matters."""
    mol, q = h3
    module = create_model("kineticnet", CONFIG)
    graph = build_graph(q["points"], q["weights"], mol.numbers, mol.positions, CONFIG.point_cutoff, CONFIG.atom_cutoff)
    key = jax.random.key(0, impl="rbg")
    params = jax.jit(module.init)(key, graph, q["rho"].astype(np.float32), q["grad_rho"].astype(np.float32))
    out = params["params"]["enhancement_out"]
    out["kernel"] = 0.3 * jax.random.normal(jax.random.fold_in(key, 1), out["kernel"].shape)
    return module, params


def energy_of(module, params, mol, q, rotation=np.eye(3), shift=np.zeros(3), rotate_grid=True):
    """T of the density of ``q`` after rotating (and shifting) the atoms and, unless told not to, the grid."""
    move = lambda x: x @ rotation.T + shift  # noqa: E731
    points, grad_rho = (move(q["points"]), q["grad_rho"] @ rotation.T) if rotate_grid else (q["points"], q["grad_rho"])
    sizes = {"n_points": len(points), "n_atoms": mol.n_atoms, "n_edges": len(points) * mol.n_atoms,
             "n_bonds": mol.n_atoms * (mol.n_atoms - 1)}  # one padded shape for every geometry: one compilation
    graph = build_graph(points, q["weights"], mol.numbers, move(mol.positions), CONFIG.point_cutoff,
                        CONFIG.atom_cutoff, sizes)
    return float(_energy(module, params, graph, q["rho"], grad_rho))


_energy = jax.jit(kinetic_energy, static_argnums=0)


def test_invariant_under_rotation_and_translation_of_molecule_and_grid(h3, model):
    mol, q = h3
    reference_energy = energy_of(*model, mol, q)
    rotation = random_rotation(np.random.default_rng(3))
    moved = energy_of(*model, mol, q, rotation, np.array([1.0, -2.0, 0.5]))
    assert moved == pytest.approx(reference_energy, rel=2e-6)
    reflected = energy_of(*model, mol, q, -rotation)
    assert reflected == pytest.approx(reference_energy, rel=2e-6)
    # Control: rotating the atoms but not the grid (and density) must change T by far more than the tolerance.
    wrong = energy_of(*model, mol, q, rotation, rotate_grid=False)
    assert abs(wrong - reference_energy) > 1e-3 * abs(reference_energy)


def test_directional_derivative_matches_finite_differences(h3, model):
    # dT along a density change f = rho g (g smooth, so grad f = g grad rho + rho grad g), by jax.grad and by
    # central differences [T(rho + e f) - T(rho - e f)] / (2 e), in float64.
    module, params = model
    mol, q = h3
    graph = build_graph(q["points"], q["weights"], mol.numbers, mol.positions, CONFIG.point_cutoff, CONFIG.atom_cutoff)
    x = q["points"][:, 0]
    g, grad_g = np.sin(x), np.cos(x)[:, None] * np.array([1.0, 0.0, 0.0])
    f, grad_f = q["rho"] * g, q["grad_rho"] * g[:, None] + q["rho"][:, None] * grad_g
    with jax.enable_x64(True):
        value_and_grad = jax.jit(jax.value_and_grad(lambda r, gr: kinetic_energy(module, params, graph, r, gr),
                                                    argnums=(0, 1)))
        _, (d_rho, d_grad) = value_and_grad(q["rho"], q["grad_rho"])
        analytic = float(d_rho @ f + np.sum(d_grad * grad_f))
        eps = 1e-5
        numeric = (float(value_and_grad(q["rho"] + eps * f, q["grad_rho"] + eps * grad_f)[0])
                   - float(value_and_grad(q["rho"] - eps * f, q["grad_rho"] - eps * grad_f)[0])) / (2 * eps)
    assert numeric == pytest.approx(analytic, rel=1e-6)


@pytest.fixture(scope="module")
def records(two_electron_data):
    """H2 and HeH+ under random potentials on the level-0 grid, one record each (conftest)."""
    return Dataset(two_electron_data)


def test_exact_two_electron_functional_has_small_loss(records):
    # For two electrons T_s = T_vW, and int f_m dT_vW/drho = int f_m (mu - v_s) for f_m = sqrt(rho) q_m: the
    # derivative residual vanishes up to quadrature error, while the gradient expansion misses it by far.
    arrays = kinetic.load_arrays(records, records.ids, CONFIG.point_cutoff, CONFIG.atom_cutoff)
    metrics = {name: evaluate_objective(kinetic.classical_objective(name), {}, arrays, batch_size=2)
               for name in ("vw", "tfvw")}
    assert metrics["vw"]["derivative_rmse"] < 0.03  # Hartree, the level-0 grid's quadrature error
    assert metrics["tfvw"]["derivative_rmse"] > 0.2
    assert metrics["vw"]["energy_error_kcal_mol"] < metrics["tfvw"]["energy_error_kcal_mol"]


def test_a_few_training_steps_lower_the_loss(records, key):
    module = create_model("kineticnet", CONFIG)
    objective, train, _, card = kinetic.prepare(records, records.ids, [], kinetic.KineticTask(), module)
    assert card == {"grid_level": 0}
    batch = {**{k: jnp.asarray(v) for k, v in train.items()}, "weight": jnp.ones(len(records), jnp.float32)}
    optimizer = optax.adam(3e-3)
    params = objective.init(key, batch)
    train_step, _ = make_steps(objective, optimizer)
    state = TrainState(jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32), params, optimizer.init(params))
    losses = []
    for _ in range(6):
        state, sums = train_step(state, batch)
        losses.append(float(sums["loss"] / sums["count"]))
    assert losses[-1] < 0.9 * losses[0]


def test_an_element_above_the_species_embedding_is_refused_before_training(two_electron_data, tmp_path):
    # HeH+ holds helium (Z = 2); an embedding of H only would map it silently onto hydrogen's row.
    with pytest.raises(ValueError, match=r"atomic numbers \[2\].*model.max_atomic_number to at least 2"):
        api.train("kineticnet", two_electron_data, str(tmp_path / "model"), {"model": {"max_atomic_number": 1}},
                  progress=False)
    assert not (tmp_path / "model").exists()
