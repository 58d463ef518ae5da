"""DeepSCF: atomic fingerprints, augmentation exactness, the U-Net's locality, training, and the SCF from its guess."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import run_cli
from dft_operators import api, molecule, reference, units
from dft_operators.data import fingerprints
from dft_operators.data.conformers import sample_conformer
from dft_operators.data.generate import GenerationSettings, make_tasks
from dft_operators.grids import UniformGrid
from dft_operators.io.dataset import Dataset
from dft_operators.models.deepscf import DeepSCFConfig, create_deepscf, receptive_field
from dft_operators.scf_guess import scf_from_guess
from dft_operators.workflows import grid_density, grid_inputs

WATER = molecule.builtin("water")
ROTATE_Z_90 = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # (x, y) -> (-y, x)


def brute_force_fingerprints(numbers, positions, grid):
    """The fingerprint formula evaluated point by point from distances (no separable factorisation)."""
    points = grid.points()  # [nx, ny, nz, 3]
    channels = []
    for element in fingerprints.ELEMENTS:
        z = molecule.atomic_number(element)
        for s in fingerprints.WIDTHS:
            r2 = [np.sum((points - r) ** 2, axis=-1) for r in positions[numbers == z]]
            channels.append(sum((np.exp(-d / (2 * s**2)) for d in r2), np.zeros(grid.shape)) / (2 * np.pi * s**2) ** 1.5)
    return np.stack(channels, axis=-1)


def test_fingerprint_channels_are_centred_on_their_atom_and_move_with_it():
    grid = UniformGrid.centered(np.zeros(3), 0.4, 32)
    at = np.array([[0.2, -0.6, 0.4]])  # an oxygen atom, off the grid points
    f = fingerprints.atomic_fingerprints([8], at, grid)  # [32, 32, 32, 15]
    names = fingerprints.channel_names()
    oxygen = [i for i, n in enumerate(names) if n.startswith("O/")]
    assert f.shape == (32, 32, 32, 15) and np.all(np.delete(f, oxygen, axis=-1) == 0)
    # Normalised Gaussians well inside the box: each channel integrates to one atom and its mean is the
    # atom's position (a Riemann sum of a Gaussian of width >= 0.5 Bohr on a 0.4 Bohr grid is exact to
    # ~exp(-2 pi^2 s^2 / h^2) ~ 1e-13); the channels are float32, so the sums hold to ~1e-6.
    points = grid.points()
    for i in oxygen[:2]:
        assert abs(grid.integrate(f[..., i]) - 1) < 1e-5
        np.testing.assert_allclose(np.einsum("xyzc,xyz->c", points, f[..., i]) * grid.voxel_volume, at[0], atol=1e-6)
    # Moving the atom by whole voxels moves every channel by the same voxels.
    shift = np.array([3, -2, 1])
    moved = fingerprints.atomic_fingerprints([8], at + shift * grid.spacing, grid)
    np.testing.assert_allclose(moved[3:, :-2, 1:], f[:-3, 2:, :-1], atol=1e-6)
    np.testing.assert_allclose(fingerprints.atomic_fingerprints(WATER.numbers, WATER.positions, grid),
                               brute_force_fingerprints(WATER.numbers, WATER.positions, grid), atol=1e-6)
    with pytest.raises(ValueError, match="no fingerprint channel for element"):
        fingerprints.atomic_fingerprints([16], at, grid)


def test_rotating_the_molecule_90_degrees_permutes_its_fields_exactly():
    # On a cubic box centred on the rotation axis, point (i, j, k) sits at c + h (i - m, j - m, k - m) with
    # m = (n - 1) / 2; the molecule rotated by R has f'(r) = f(R^T (r - c) + c), and R^T maps index (i, j)
    # to (j, n - 1 - i): f' = np.rot90(f) exactly, for every field made from the geometry alone.
    centre = WATER.positions.mean(0)
    rotated = WATER.with_positions((WATER.positions - centre) @ ROTATE_Z_90.T + centre)
    grid = UniformGrid.centered(centre, 0.4, 24)
    level = reference.Level()

    def fields(mol):
        return {"fingerprints": fingerprints.atomic_fingerprints(mol.numbers, mol.positions, grid),
                "v_ext": reference.screened_ionic_potential(mol, level, grid),
                "rho0": reference.density_on_box(reference.atomic_guess(mol, level), grid)}

    before, after = fields(WATER), fields(rotated)
    for name in before:
        scale = np.abs(before[name]).max()
        rounding = 1e-6 if before[name].dtype == np.float32 else 1e-9  # the fingerprints are float32
        np.testing.assert_allclose(after[name], np.rot90(before[name], 1, axes=(0, 1)), atol=rounding * scale,
                                   err_msg=name)
        # Negative control: the opposite rotation is not the same permutation.
        assert np.abs(after[name] - np.rot90(before[name], -1, axes=(0, 1))).max() > 1e-2 * scale


def test_strain_is_a_symmetric_deformation_and_the_fingerprints_follow_it():
    rng = np.random.default_rng(3)
    methane = molecule.builtin("methane")  # not planar, so the deformation is determined
    strained = sample_conformer(methane, rng, displacement=0.0, rotate=False, strain=0.05)
    centre = methane.positions.mean(0)
    deformation = np.linalg.lstsq(methane.positions - centre, strained.positions - centre, rcond=None)[0]  # [3, 3]
    np.testing.assert_allclose(deformation, deformation.T, atol=1e-10)  # no rotation
    assert 1e-3 < np.abs(deformation - np.eye(3)).max() < 0.3
    # The dataset generator passes the setting through; with strain 0 it samples what it sampled before.
    task, = make_tasks([WATER], GenerationSettings(n_conformers=1, displacement=0.0, rotate=False, strain=0.05))
    assert not np.allclose(task.molecule.positions, WATER.positions)
    plain, = make_tasks([WATER], GenerationSettings(n_conformers=1))
    reference_conformer = sample_conformer(WATER, np.random.default_rng([0, 0, 0]), 0.1, True)
    np.testing.assert_array_equal(plain.molecule.positions, reference_conformer.positions)
    # The strained molecule's channels are the Gaussians at the strained atoms: moments to grid tolerance.
    grid = UniformGrid.centered(centre, 0.4, 32)
    f = fingerprints.atomic_fingerprints(strained.numbers, strained.positions, grid)
    np.testing.assert_allclose(f, brute_force_fingerprints(strained.numbers, strained.positions, grid), atol=1e-6)
    # Second moments about the centre: int (r - c)(r - c)^T g = sum_a (R_a - c)(R_a - c)^T + n_H s^2 1.
    hydrogen, width = fingerprints.channel_names().index("H/0.5"), fingerprints.WIDTHS[0]
    offsets = grid.points() - centre  # [32, 32, 32, 3]
    moment = np.einsum("xyzi,xyzj,xyz->ij", offsets, offsets, f[..., hydrogen]) * grid.voxel_volume
    arms = strained.positions[strained.numbers == 1] - centre  # [4, 3]
    np.testing.assert_allclose(moment, arms.T @ arms + 4 * width**2 * np.eye(3), atol=1e-5)  # float32 channels
    unstrained = methane.positions[methane.numbers == 1] - centre
    assert np.abs(moment - unstrained.T @ unstrained - 4 * width**2 * np.eye(3)).max() > 0.05  # it did move


@pytest.fixture(scope="module")
def random_tiny():
    """The tiny U-Net with random (not zero-initialised) weights, so every path reaches the output."""
    module = create_deepscf(dataclasses.replace(DeepSCFConfig.tiny(), in_channels=2))

    @jax.jit
    def random_params(key):
        leaves, tree = jax.tree_util.tree_flatten(module.init(key, jnp.zeros((1, 8, 8, 8, 2))))
        keys = jax.random.split(key, len(leaves))
        return jax.tree_util.tree_unflatten(tree, [0.3 * jax.random.normal(k, x.shape) for k, x in zip(keys, leaves)])

    return module, random_params(jax.random.key(0, impl="rbg"))  # rbg: XLA compiles it far faster than threefry


def test_receptive_field_is_what_the_docstring_says(random_tiny):
    module, params = random_tiny
    x = jax.random.normal(jax.random.PRNGKey(2), (1, 48, 48, 48, 2))
    grad = jax.jit(jax.grad(lambda x: module.apply(params, x)[0, 24, 24, 24]))(x)
    support = np.nonzero(np.abs(np.asarray(grad)).sum(axis=(0, 2, 3, 4)))[0]
    assert support.max() - support.min() + 1 == receptive_field(DeepSCFConfig.tiny()) == 36
    assert receptive_field(DeepSCFConfig()) * 0.4 > 3 * 2.9  # the default covers several C-C bonds (2.9 Bohr)


def test_the_unet_is_translation_equivariant_and_predicts_on_a_larger_box(random_tiny):
    # A compact input whose support plus the receptive field fits in the small box: the larger box, offset by
    # a multiple of p 2^L = 4 voxels, holds the same features around it (no biases: zero in, zero out).
    module, params = random_tiny
    apply = jax.jit(module.apply)
    blob = np.exp(-np.sum((UniformGrid.centered(np.zeros(3), 1.0, 48).points()) ** 2, -1) / 4)  # [48, 48, 48]
    x = np.stack([blob, -0.5 * blob], -1)[None].astype(np.float32)
    small = np.asarray(apply(params, x))[0]
    for offset, equal in ((8, True), (6, False)):  # 6 is not a multiple of 4: the patches fall differently
        large = np.zeros((1, 60, 60, 60, 2), np.float32)
        large[:, offset:offset + 48, offset:offset + 48, offset:offset + 48] = x
        out = np.asarray(apply(params, large))[0]
        inner = out[offset:offset + 48, offset:offset + 48, offset:offset + 48]
        close = np.abs(inner - small).max() <= 1e-5 * np.abs(small).max()
        assert close == equal
        if equal:
            assert np.abs(out).sum() - np.abs(inner).sum() <= 1e-5 * np.abs(small).sum()  # nothing outside


@pytest.fixture(scope="module")
def trained(tiny_grid_data, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("deepscf") / "model")
    api.train("deepscf", tiny_grid_data, out, {"preset": "tiny", "train": {"epochs": 3, "val_fraction": 0.0}},
              progress=False)
    return api.load_model(out)


def test_untrained_network_predicts_rho0(tiny_grid_data):
    ds = Dataset(tiny_grid_data)
    task = grid_inputs.DeepSCFTask()
    source = grid_inputs.GridSource(ds, ds.ids[:2], task)
    arrays = {k: np.stack([source[i][k] for i in range(2)]) for k in source[0]}
    unit = grid_inputs.InputSpec(task, grid_inputs.Normaliser.identity(task.in_channels), 0.5, (20, 20, 20))
    spec = grid_inputs.InputSpec(task, grid_inputs.fit_normaliser(source, unit), 0.5, (20, 20, 20))
    objective = grid_density.objective(create_deepscf(DeepSCFConfig.tiny()), spec)
    params = jax.jit(objective.init)(jax.random.key(0, impl="rbg"), arrays)
    result = jax.jit(objective.per_sample)(params, arrays)
    # The last layer starts at zero: the prediction is rho0 scaled to N (rho0 holds N to ~0.1 %).
    np.testing.assert_allclose(result["nmae_percent"], result["rho0_nmae_percent"], rtol=2e-2)


def test_training_lowers_the_loss_and_predictions_are_densities(trained, tiny_grid_data):
    assert trained.card["task"] == {"inputs": ["rho0", "fingerprints"], "residual": True, "center_inputs": False,
                                    "crop": 24}  # 24 >= the 20-point box: trained on whole boxes
    assert trained.card["model_config"]["in_channels"] == 1 + fingerprints.n_channels()
    metrics = api.evaluate(trained, tiny_grid_data)
    assert metrics["nmae_percent"] < metrics["rho0_nmae_percent"]
    prediction = api.predict(trained, molecule.builtin("methanol"))  # too big for the 8 Bohr training box
    grid = prediction["grid"]
    assert grid.shape[0] > trained.card["grid"]["box_shape"] and grid.spacing == trained.card["grid"]["spacing"]
    assert np.all(prediction["density"] >= 0) and abs(prediction["n_electrons"] - 14) < 1e-3
    with pytest.raises(ValueError, match="training spacing only"):
        api.predict(trained, WATER, refine=2)


def test_scf_converges_to_the_same_energy_whatever_the_guess(trained):
    minao = reference.run_ks(WATER, reference.Level())  # PySCF's default guess
    results = {g: scf_from_guess(WATER, g) for g in ("atom", "huckel")}
    results["model"] = scf_from_guess(WATER, trained)
    grid = UniformGrid.centered(WATER.positions.mean(0), 0.3, 40)
    exact = reference.guess_from_box(WATER, reference.Level(), grid, reference.density_on_box(minao.density, grid))
    from_exact = reference.run_ks(WATER, reference.Level(), dm0=exact)
    energies = [minao.energy, from_exact.energy] + [r["energy"] for r in results.values()]
    assert max(energies) - min(energies) < 1e-6, energies
    assert all(r["converged"] for r in results.values()) and minao.converged and from_exact.converged
    assert from_exact.cycles <= minao.cycles - 3  # 4 against 7
    assert {"cycles", "energy", "converged", "seconds", "guess"} <= set(results["model"])


def test_scf_command_line():
    result = json.loads(run_cli("scf", "builtin:water", "--guess", "huckel", "--json").stdout.splitlines()[-1])
    assert {"cycles", "energy", "converged", "seconds"} <= set(result) and result["converged"]
    # the ground state of water at the default level, whatever the guess: PySCF's from its own (minao) guess
    assert result["energy"] == pytest.approx(reference.run_ks(WATER, reference.Level()).energy, abs=1e-6)
    assert set(result["timings"]) == {"import", "guess_conversion", "scf"}
    after_start_up = sum(t for k, t in result["timings"].items() if k != "import")
    assert after_start_up <= result["seconds"] + 1e-3  # "seconds": every cost after start-up
    with pytest.raises(ValueError, match="neither one of minao, atom, huckel nor a model"):
        scf_from_guess(WATER, "no-such-guess")


def test_a_crop_sees_the_inputs_of_the_box_it_was_cut_from(tiny_grid_data):
    ds = Dataset(tiny_grid_data)
    task = grid_inputs.DeepSCFTask(crop=12)
    source = grid_inputs.GridSource(ds, ds.ids[:1], task)
    row = source[0]
    crop = grid_inputs.random_crop(row, np.random.default_rng(0), 12, 0.5)
    start = crop["offset"]
    cube = tuple(slice(a, a + 12) for a in start)
    np.testing.assert_array_equal(crop["rho"], row["rho"][cube])
    spec = grid_inputs.InputSpec(task, grid_inputs.Normaliser.identity(task.in_channels), 0.5, (20, 20, 20))
    whole = grid_inputs.assemble_inputs({k: v[None] for k, v in row.items()}, spec)[0]
    part = grid_inputs.assemble_inputs({k: np.asarray(v)[None] for k, v in crop.items()},
                                        grid_inputs.InputSpec(task, spec.normaliser, 0.5, (12, 12, 12)))[0]
    # The fingerprints are drawn from the atoms for the cube's own points: the same values as the box's.
    np.testing.assert_allclose(part, np.asarray(whole)[cube], atol=1e-6 * float(np.abs(whole).max()))
    atoms = row["positions"][row["atom_mask"]] / 0.5
    assert np.any(np.all((atoms >= start) & (atoms < start + 12), axis=1)), "the cube holds an atom"


def test_deepscf_trains_on_crops_and_validates_on_whole_boxes(tiny_grid_data, tmp_path):
    config = {"preset": "tiny", "task": {"crop": 12}, "train": {"epochs": 2, "val_fraction": 0.25}}
    summary = api.train("deepscf", tiny_grid_data, str(tmp_path / "m"), config, progress=False)
    assert summary["epochs"] == 2 and "raw_count_error" not in summary["train"]  # crops: no electron count
    assert "raw_count_error" in summary["val"]
    # what it learned on crops holds on the whole boxes of an unseen molecule: better than the atomic guess it
    # corrects (measured 15.8 % against 18.4 %)
    assert summary["val"]["nmae_percent"] < summary["val"]["rho0_nmae_percent"]
    model = api.load_model(str(tmp_path / "m"))
    assert model.card["task"]["crop"] == 12
    density = api.predict(model, molecule.builtin("water"))["density"]  # the whole box again
    assert density.shape[0] >= 20


def test_box_hartree_potential_of_a_gaussian_charge_is_the_analytic_erf_over_r():
    # A normalised Gaussian exp(-a r^2) has v(r) = erf(sqrt(a) r) / r. On a 0.4 Bohr box (a = 2 Bohr^-2, about
    # two voxels wide) the band-limited kernel gets it to 4e-4 Ha; point charges (1/r between voxel centres)
    # were off by 2.5e-2. Off the box's centre, so minimum-image offsets and both halves of the padding count.
    from scipy.special import erf

    from dft_operators.reference.guess import free_space_hartree
    grid = UniformGrid.centered(np.zeros(3), 0.4, 40)
    centre = np.array([1.3, -2.1, 0.7])
    r = np.linalg.norm(grid.points() - centre, axis=-1)
    a = 2.0
    density = (a / np.pi) ** 1.5 * np.exp(-a * r**2)
    potential = free_space_hartree(density, grid.spacing)
    np.testing.assert_allclose(potential, erf(np.sqrt(a) * r) / r, atol=1e-3)


def test_harris_energy_is_stationary_at_the_scf_density():
    # E_Harris[rho_scf + e d] - E_Harris[rho_scf] = O(e^2) (Harris-Foulkes: stationary at self-consistency),
    # while the density error is O(e). d = rho_atoms - rho_scf, 16 % NMAE for water.
    level = reference.Level()
    state = reference.run_ks(WATER, level)
    grid = UniformGrid.around(WATER.positions, 0.3, 6.0)
    rho = reference.density_on_box(state.density, grid)
    d = reference.density_on_box(reference.atomic_guess(WATER, level), grid) - rho
    energies = [reference.harris_from_box(WATER, level, grid, rho + e * d) for e in (0.0, 0.05, 0.1)]
    harris = np.array([r["energy_harris"] for r in energies])
    # the box's discretisation of the exact density: 0.008 mHa (0.6 with point charges for the Coulomb kernel)
    assert abs(harris[0] - state.energy) < 1e-4
    assert abs(energies[0]["energy_one_step"] - state.energy) < 5e-5  # one step from the exact Fock matrix
    ratio = (harris[2] - harris[0]) / (harris[1] - harris[0])
    assert 3.0 < ratio < 5.0, f"not quadratic in the density error: ratio {ratio}"  # 4 for e^2
    np.testing.assert_allclose(energies[0]["dipole"], state.dipole, atol=2e-3)


def test_scf_no_scf_command_line(trained):
    result = json.loads(run_cli("scf", "builtin:water", "--guess", trained.directory, "--no-scf",
                                "--json").stdout.splitlines()[-1])
    assert {"energy_harris", "energy_one_step", "dipole_debye", "seconds"} <= set(result)
    assert set(result["timings"]) == {"import", "model_load", "inference", "harris_and_one_step"}
    scf = scf_from_guess(WATER, "minao")
    assert abs(result["energy_harris"] - scf["energy"]) < 0.5  # a tiny model's density: within 0.5 Ha
    assert result["energy_one_step"] >= scf["energy"] - 1e-6  # one diagonalisation: above the SCF minimum
    # The command's numbers are those of this model's density: its prediction on its box, through the Harris
    # functional and one Kohn-Sham step here (float32 densities: equal to ~1e-6 Hartree, 1e-4 Debye).
    prediction = api.predict(trained, WATER)
    here = reference.harris_from_box(WATER, trained.level, prediction["grid"], prediction["density"])
    assert result["energy_harris"] == pytest.approx(here["energy_harris"], abs=1e-5)
    assert result["energy_one_step"] == pytest.approx(here["energy_one_step"], abs=1e-5)
    np.testing.assert_allclose(result["dipole_debye"], here["dipole"] * units.DEBYE_PER_AU, atol=1e-3)
    proc = run_cli("scf", "builtin:water", "--guess", "minao", "--no-scf", check=False)
    assert proc.returncode == 2 and "needs a model's density" in proc.stderr
