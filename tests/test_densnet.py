"""DenSNet: the density-basis layout against PySCF (rotations, dipoles, electron counts), equivariance of
the model with a control that must fail, forces against finite differences, and train/save/load/predict."""

import json
import os

import e3nn_jax as e3nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dft_operators import api, molecule, reference, units
from dft_operators.data.conformers import random_rotation
from dft_operators.data.generate import GenerationSettings, generate
from dft_operators.io.dataset import Dataset
from dft_operators.md.trajectory import load_trajectory
from dft_operators.models import create_model, densnet, model_config
from dft_operators.nn.graph import build_atom_graph
from dft_operators.training import loop
from dft_operators.training.config import TrainConfig
from dft_operators.workflows import densnet as workflow
from dft_operators.workflows import density_records, density_tables

CONFIG = model_config("densnet", preset="tiny")
IRREPS = e3nn.Irreps(CONFIG.basis_irreps)
# The top-level modules of the tiny model that make the coefficients (one density interaction).
DENSITY_NETWORK = {"density_species", "density_embed", "density_0", "neighbour_readout", "coefficient_readout"}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Water and methane, 2 displaced conformers each: all-electron LDA/def2-svp, coefficients and forces."""
    out = str(tmp_path_factory.mktemp("densnet") / "dens")
    settings = GenerationSettings(kinds=("coefficients",), level=reference.ALL_ELECTRON, n_conformers=2,
                                  displacement=0.05, forces=True)
    generate([molecule.builtin("water"), molecule.builtin("methane")], out, settings, progress=False)
    return out


@pytest.fixture(scope="module")
def elements(data):
    """The one-atom data of H, C and O, from the records' stored arrays."""
    ds = Dataset(data)
    return density_records.record_elements(ds, ds.ids)


@pytest.fixture(scope="module")
def tables(data, elements):
    ds = Dataset(data)
    t = density_tables.element_tables(elements, reference.ALL_ELECTRON.aux_basis, CONFIG.basis_irreps)
    return density_tables.fit_baselines(t, density_records.load_arrays(ds, ds.ids, t, "overlap"))


def test_an_element_above_the_models_atomic_numbers_is_named(tables):
    heaviest = max(tables.elements)
    expected = f"atomic numbers .*{heaviest}.* set model.max_atomic_number to at least {heaviest}"
    with pytest.raises(ValueError, match=expected):
        density_tables.model_arrays(tables, heaviest - 1)


@pytest.fixture(scope="module")
def model(tables):
    """The tiny model with random (non-zero) output layers, so that both networks matter."""
    module = create_model("densnet", CONFIG)
    basis, baseline = density_tables.model_arrays(tables, CONFIG.max_atomic_number)
    mol = molecule.builtin("water")
    graph = build_atom_graph(mol.numbers, mol.positions)
    params = jax.jit(module.init)(jax.random.PRNGKey(0), graph, basis, baseline, 10.0)
    key = jax.random.PRNGKey(1)
    params = jax.tree_util.tree_map_with_path(
        lambda path, x: 0.3 * jax.random.normal(jax.random.fold_in(key, len(str(path))), x.shape)
        if any(k in str(path) for k in ("coefficient_readout", "energy_out")) else x, params)
    return module, params, basis, baseline


def _model_layout(tables, mol, fit):
    maps = density_tables.layout_maps(tables)
    return density_tables.to_model_layout(maps, mol.numbers, fit["aux_labels"], fit["coefficients"])


def test_harmonic_maps_are_scaled_rotations():
    # PySCF's real harmonics and e3nn's span the same space: M_l M_l^T is a multiple of the identity.
    for l, m in enumerate(density_tables.harmonic_maps(4)):
        gram = m @ m.T
        np.testing.assert_allclose(gram, gram[0, 0] * np.eye(2 * l + 1), atol=1e-10)


def test_layout_round_trip_and_free_atoms(data, tables):
    ds = Dataset(data)
    r = ds.record(ds.ids[0])
    c = density_tables.to_model_layout(density_tables.layout_maps(tables), r["numbers"],
                                       r["coefficients/aux_labels"], r["coefficients/c"])
    np.testing.assert_allclose(density_tables.to_pyscf_order(tables, r["numbers"], c), r["coefficients/c"],
                               atol=1e-10)
    for z, t in tables.elements.items():  # the atomic baseline holds each atom's electrons exactly
        assert np.dot(t.charges, t.atomic) == pytest.approx(z, abs=1e-9)


def test_tables_survive_the_model_card(tables):
    # The card's JSON gives back the same numbers bit for bit; a card from before the schema field (the shipped
    # densnet-ethanol) reads as schema 1, and another schema is refused.
    stored = json.loads(json.dumps(tables.to_json()))
    back = density_tables.DensityTables.from_json(stored)
    assert (back.aux_basis, back.basis_irreps, back.atom_energies, back.energy_scale, back.schema) == (
        tables.aux_basis, tables.basis_irreps, tables.atom_energies, tables.energy_scale, density_tables.SCHEMA)
    for z, t in tables.elements.items():
        for field in ("atomic", "charges", "moments", "mask", "to_pyscf", "scale"):
            np.testing.assert_array_equal(getattr(back.elements[z], field), getattr(t, field))
    old = {k: v for k, v in stored.items() if k != "schema"}
    assert density_tables.DensityTables.from_json(old).schema == 1
    with pytest.raises(ValueError, match="schema"):
        density_tables.DensityTables.from_json({**stored, "schema": density_tables.SCHEMA + 1})


def test_element_data_from_records_match_pyscf(elements):
    # What training reads from the records (no PySCF) is what PySCF computes for the free atom: shells, integrals,
    # first moments (PySCF's by level-7 quadrature, ~1e-8 from exact for O) and the free atom's fit.
    for z, stored in elements.items():
        table = reference.density_basis.element_basis(z, reference.ALL_ELECTRON)
        np.testing.assert_array_equal(stored["ls"], table["ls"])
        for key, atol in (("integrals", 1e-12), ("moments", 1e-7), ("atomic_coefficients", 1e-12)):
            np.testing.assert_allclose(stored[key], table[key], rtol=1e-10, atol=atol, err_msg=f"{z} {key}")


def test_reference_dipole_matches_pyscf(data, tables):
    ds = Dataset(data)
    basis, _ = density_tables.model_arrays(tables, CONFIG.max_atomic_number)
    arrays = density_records.load_arrays(ds, ds.ids, tables, "overlap")
    for i in range(len(ds.ids)):
        graph = density_records.graph_of({k: v[i] for k, v in arrays.items()})
        mu = densnet.dipole(jnp.asarray(arrays["coefficients"][i]), graph, basis)
        error_debye = np.linalg.norm(np.asarray(mu) - arrays["dipole"][i]) * units.DEBYE_PER_AU
        assert error_debye < 0.01, (ds.ids[i], error_debye)


def test_fitted_coefficients_rotate_with_wigner_matrices(tables, elements, monkeypatch):
    # Rotating the molecule and refitting with PySCF gives D(R) c in the model's layout. Control: a layout
    # that keeps PySCF's component order (identity maps) must fail, so the check can see a wrong convention.
    mol = molecule.builtin("water")
    rotation = random_rotation(np.random.default_rng(3))
    fits = [reference.fit_coefficients(reference.run_ks(m, reference.ALL_ELECTRON).density)
            for m in (mol, mol.with_positions(mol.positions @ rotation.T))]
    wigner = np.asarray(IRREPS.D_from_matrix(jnp.asarray(rotation)))

    def rotation_error(t):  # relative to the l > 0 coefficients (the s ones, much larger, rotate trivially)
        c, c_rot = (_model_layout(t, mol, f) for f in fits)
        return np.abs(c_rot - c @ wigner.T).max() / np.abs(c[:, IRREPS[0].dim:]).max()

    assert rotation_error(tables) < 1e-3
    monkeypatch.setattr(density_tables, "harmonic_maps", lambda lmax: [np.eye(2 * l + 1) for l in range(lmax + 1)])
    identity_maps = density_tables.element_tables(elements, reference.ALL_ELECTRON.aux_basis, CONFIG.basis_irreps)
    assert rotation_error(identity_maps) > 1e-2


def test_density_loss_metric_is_the_real_space_overlap(data, tables):
    """The loss's metric (cross-atom overlaps included) gives int (sum c chi)^2 dr by quadrature, for random
    coefficients on the hydrogens, whose diffuse functions overlap across atoms; a one-centre metric fails."""
    ds = Dataset(data)
    rid = ds.ids[0]
    record = ds.record(rid)
    mol = molecule.Molecule.from_record(record)
    overlap = density_records.load_arrays(ds, [rid], tables, "overlap")["metric"][0].astype(np.float64)  # [A, A, D, D]
    mask = np.stack([tables.elements[int(z)].mask for z in mol.numbers])
    c = np.random.default_rng(0).normal(size=mask.shape) * mask * (mol.numbers == 1)[:, None]
    card = {"level": reference.ALL_ELECTRON.as_dict(), "tables": tables.to_json()}
    points, weights = reference.molecular_quadrature(mol, reference.ALL_ELECTRON, grid_level=4)
    exact = weights @ workflow.density_at(card, mol, c, points) ** 2
    assert np.einsum("ad,abde,be->", c, overlap, c) == pytest.approx(exact, rel=1e-4)
    one_centre = overlap * np.eye(len(c))[:, :, None, None]
    assert abs(np.einsum("ad,abde,be->", c, one_centre, c) - exact) > 0.05 * exact


def test_coulomb_loss_metric_is_pyscfs_in_the_model_layout(data, tables):
    """The Coulomb metric in the model layout gives (rho|rho) = c^T (P|Q) c of the same coefficients in PySCF's
    order (int2c2e of the aux basis), and the squared Coulomb norm is positive."""
    ds = Dataset(data)
    rid = ds.ids[0]
    mol = molecule.Molecule.from_record(ds.record(rid))
    coulomb = density_records.load_arrays(ds, [rid], tables, "coulomb")["metric"][0].astype(np.float64)
    mask = np.stack([tables.elements[int(z)].mask for z in mol.numbers])
    c = np.random.default_rng(1).normal(size=mask.shape) * mask
    in_pyscf_order = density_tables.to_pyscf_order(tables, mol.numbers, c)
    aux = reference.level.build_mole(mol, reference.ALL_ELECTRON, basis=reference.ALL_ELECTRON.aux_basis)
    exact = in_pyscf_order @ aux.intor("int2c2e") @ in_pyscf_order
    assert exact > 0 and np.einsum("ad,abde,be->", c, coulomb, c) == pytest.approx(exact, rel=1e-5)
    with pytest.raises(ValueError, match="density_metric"):
        workflow.DensityTask(density_metric="kinetic")


def test_model_is_equivariant_and_conserves_electrons(model):
    module, params, basis, baseline = model
    mol = molecule.builtin("methanol")
    rotation = random_rotation(np.random.default_rng(5))
    shift = np.array([0.3, -1.0, 2.0])
    outs = [jax.jit(densnet.predict_all, static_argnums=0)(
        module, params, build_atom_graph(mol.numbers, positions), basis, baseline, float(mol.n_electrons))
        for positions in (mol.positions, mol.positions @ rotation.T + shift)]
    wigner = np.asarray(IRREPS.D_from_matrix(jnp.asarray(rotation)))
    c, c_rot = (np.asarray(o["coefficients"]) for o in outs)
    scale = np.abs(c[:, IRREPS[0].dim:]).max()  # the l > 0 part (the s part is larger and rotates trivially)
    assert scale > 0
    np.testing.assert_allclose(c_rot, c @ wigner.T, atol=1e-3 * scale)
    assert np.abs(c_rot - c @ wigner).max() > 0.1 * scale  # the inverse rotation is wrong (control)
    assert float(outs[1]["energy"]) == pytest.approx(float(outs[0]["energy"]), abs=2e-5)
    forces = np.asarray(outs[0]["forces"])
    largest = np.abs(forces).max()
    assert largest > 1e-6  # the energy network is not flat
    np.testing.assert_allclose(outs[1]["forces"], forces @ rotation.T, atol=1e-3 * largest)
    np.testing.assert_allclose(forces.sum(0), 0.0, atol=1e-3 * largest)  # translation invariance
    for o in outs:
        charges = np.asarray(basis.charges)[mol.numbers]
        assert float((charges * np.asarray(o["coefficients"])).sum()) == pytest.approx(mol.n_electrons, rel=1e-5)


def test_forces_match_finite_differences(model):
    module, params, basis, baseline = model
    mol = molecule.builtin("water")
    with jax.enable_x64(True):
        to64 = lambda tree: jax.tree_util.tree_map(  # noqa: E731
            lambda x: jnp.asarray(x, jnp.float64) if jnp.asarray(x).dtype.kind == "f" else x, tree)
        graph = to64(build_atom_graph(mol.numbers, mol.positions))
        p64, b64, e64 = to64(params), to64(basis), to64(baseline)
        out = jax.jit(densnet.predict_all, static_argnums=0)(module, p64, graph, b64, e64, 10.0)
        energy = jax.jit(lambda r: module.apply(p64, graph.replace(atom_positions=r), b64, e64, 10.0)[1])
        step = 1e-4
        for atom, axis in ((0, 0), (1, 2), (2, 1)):
            energies = [energy(graph.atom_positions.at[atom, axis].add(sign * step)) for sign in (1, -1)]
            numeric = -(energies[0] - energies[1]) / (2 * step)
            assert float(out["forces"][atom, axis]) == pytest.approx(float(numeric), rel=1e-5, abs=1e-8)


def test_after_the_density_stage_the_density_network_is_frozen_or_trained_on(data, tables, model):
    # Two training steps (the first at learning rate 0, the warm-up's start): frozen, every weight of the density
    # network is bitwise unchanged (no step, no weight decay) and every module of the energy network moves;
    # trained on (control), the density network moves too.
    ds, (module, params, _, _) = Dataset(data), model
    batch = {**density_records.load_arrays(ds, ds.ids[:2], tables, "overlap"), "weight": np.ones(2, np.float32)}
    before = jax.device_get(params)["params"]
    for freeze in (True, False):
        task = workflow.DensityTask(density_epochs=3, density_learning_rate=1e-4, freeze_density=freeze)
        objective = workflow.objective(module, tables, task)
        assert objective.pretraining[0].epochs == 3 and objective.pretraining[0].learning_rate == 1e-4
        labels = objective.param_labels(params, batch) if freeze else None
        if freeze:  # the partition read from the computation is the density network
            assert {name for name, sub in labels["params"].items()
                    if set(jax.tree_util.tree_leaves(sub)) == {loop.FROZEN}} == DENSITY_NETWORK
            assert all(set(jax.tree_util.tree_leaves(sub)) == {loop.TRAINABLE}
                       for name, sub in labels["params"].items() if name not in DENSITY_NETWORK)
        optimizer = loop.make_optimizer(TrainConfig(), 10, labels)
        train_step, _ = loop.make_steps(objective, optimizer, labels)
        start = jax.tree_util.tree_map(jnp.array, params)  # a copy: the step donates its state
        state = loop.TrainState(jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32), start, optimizer.init(start))
        for _ in range(2):
            state, sums = train_step(state, batch)
        assert np.isfinite(float(sums["grad_norm"]))
        after = jax.device_get(state.params)["params"]
        for name in before:
            same = [np.array_equal(a, b) for a, b in zip(jax.tree_util.tree_leaves(after[name]),
                                                         jax.tree_util.tree_leaves(before[name]))]
            assert all(same) if freeze and name in DENSITY_NETWORK else not all(same), (freeze, name)


def test_train_save_load_predict_md_ir(data, tmp_path):
    from conftest import run_cli

    out = str(tmp_path / "model")
    summary = api.train("densnet", data, out, {"preset": "tiny", "train": {"epochs": 2, "val_fraction": 0.0},
                                               "task": {"density_epochs": 1}}, progress=False)
    assert summary["epochs"] == 2 and np.isfinite(summary["train"]["loss"])
    density_first = [json.loads(line) for line in open(os.path.join(out, "density_first", "log.jsonl"))]
    assert len(density_first) == 1 and "train_density_l2" in density_first[0]
    assert "train_energy_error_kcal_mol" not in density_first[0]  # the density network alone
    model = api.load_model(out)
    pretrained = api.load_model(os.path.join(out, "density_first")).params["params"]
    for name, weights in model.params["params"].items():  # then frozen bit for bit, the energy network trained
        same = [np.array_equal(a, b) for a, b in zip(jax.tree_util.tree_leaves(weights),
                                                     jax.tree_util.tree_leaves(pretrained[name]))]
        assert all(same) if name in DENSITY_NETWORK else not all(same), name
    water = molecule.builtin("water")
    pred = api.predict(model, water, str(tmp_path / "water.cube"))
    # A 0.2 Bohr box misses part of the 1s cusp; PySCF's own density on the same box misses the same part.
    exact_on_box = pred["grid"].integrate(reference.density_on_box(
        reference.run_ks(water, reference.ALL_ELECTRON).density, pred["grid"]))
    assert pred["n_electrons"] == pytest.approx(exact_on_box, abs=0.02)
    assert np.all(np.isfinite(pred["forces"])) and len(pred["dipole_debye"]) == 3
    metrics = api.evaluate(model, data)
    assert {"density_l2", "energy_error_kcal_mol", "force_mae_kcal_mol_a", "dipole_error_debye"} <= set(metrics)
    # evaluate's NMAE (records_nmae, against the stored fit) equals the one against a fresh PySCF run and fit
    ds = Dataset(data)
    per_record = [workflow.records_nmae(model.card, model.module, model.params, ds, [rid]) for rid in ds.ids]
    assert metrics["nmae_percent"] == pytest.approx(np.mean(per_record), rel=1e-6)
    geometry = molecule.Molecule.from_record(ds.record(ds.ids[0]))
    fresh = workflow.density_nmae(model.card, model.module, model.params, geometry, grid_level=2)
    assert per_record[0] == pytest.approx(fresh["model_vs_fit"], rel=1e-3)
    # against the stored Kohn-Sham density, as against a fresh one
    vs_ks = workflow.records_nmae(model.card, model.module, model.params, ds, ds.ids[:1], against="ks")
    assert vs_ks == pytest.approx(fresh["model_vs_ks"], rel=1e-3)
    from ase import Atoms  # the ASE calculator gives the same energy and forces in ASE's units

    atoms = Atoms(numbers=water.numbers, positions=water.positions * units.ANGSTROM_PER_BOHR)
    atoms.calc = api.ase_calculator(model)
    assert atoms.get_potential_energy() == pytest.approx(pred["energy_hartree"] * units.HARTREE_TO_EV, abs=1e-3)
    np.testing.assert_allclose(atoms.get_forces(), pred["forces"] * units.HARTREE_TO_EV / units.ANGSTROM_PER_BOHR,
                               atol=1e-3)
    harmonic = api.harmonic_ir(water, model)  # 3 modes for a bent triatomic, intensities >= 0
    assert harmonic["frequencies_cm1"].shape == harmonic["intensities_km_mol"].shape == (3,)
    assert np.all(np.isfinite(harmonic["frequencies_cm1"])) and np.all(harmonic["intensities_km_mol"] >= 0)
    # ... and they are the model's: the Hessian by central differences of the calculator's forces (1e-3 Angstrom
    # steps), mass-weighted by the masses in electron masses, its six modes nearest zero dropped, gives the same
    # wavenumbers (measured to 2e-4 cm^-1; this barely trained surface is nearly flat, so they are small).
    columns = []
    for i in range(3 * water.n_atoms):
        forces = []
        for sign in (1, -1):
            displaced = atoms.copy()
            positions = atoms.positions.copy()
            positions.flat[i] += sign * 1e-3
            displaced.positions, displaced.calc = positions, atoms.calc
            forces.append(displaced.get_forces().ravel())
        columns.append(-(forces[0] - forces[1]) / 2e-3)  # eV / Angstrom^2
    hessian = np.array(columns).T * units.ANGSTROM_PER_BOHR**2 / units.HARTREE_TO_EV  # Hartree / Bohr^2
    inverse_sqrt = 1.0 / np.sqrt(np.repeat(water.masses, 3))
    k = np.linalg.eigvalsh(0.5 * (hessian + hessian.T) * inverse_sqrt[:, None] * inverse_sqrt[None, :])
    k = np.sort(k[np.argsort(np.abs(k))[6:]])
    np.testing.assert_allclose(harmonic["frequencies_cm1"], np.sign(k) * np.sqrt(np.abs(k)) * units.HARTREE_TO_CM1,
                               rtol=1e-3, atol=1e-2)
    traj = str(tmp_path / "traj.npz")
    md = api.md(water, model, steps=40, dt_fs=0.25, out=traj, progress=False)
    assert md["steps"] == 40 and len(md["trajectory"].potential) == 41 and np.isfinite(md["energy_drift"])
    saved = load_trajectory(traj)  # what was written is the run, started at the requested temperature
    np.testing.assert_array_equal(saved.positions, md["trajectory"].positions)
    assert saved.frame_dt_fs == 0.25 and saved.temperature[0] == pytest.approx(300.0, rel=1e-9)
    ir = json.loads(run_cli("ir", traj, "--png", str(tmp_path / "ir.png"), "--max-cm1", "3000",
                            "--json").stdout.strip().splitlines()[-1])
    assert ir["peaks_cm1"] == api.ir(traj, max_cm1=3000)["peaks_cm1"]  # the command reports the library's peaks
    assert (tmp_path / "ir.png").read_bytes()[:4] == b"\x89PNG"
