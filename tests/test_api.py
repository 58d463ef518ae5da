"""The Python API behind the command line: train, load, predict, evaluate, on a tiny FNO."""

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import REPO

from dft_operators import api, molecule
from dft_operators.data.splits import split_by_molecule
from dft_operators.io.dataset import Dataset
from dft_operators.training.setup import read_config
from dft_operators.workflows import grid_density

TINY = {"preset": "tiny", "train": {"epochs": 3, "val_fraction": 0.25}}


@pytest.fixture(scope="module")
def trained(tiny_grid_data, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("model") / "fno")
    summary = api.train("fno", tiny_grid_data, out, TINY, progress=False)
    return out, summary


def test_validation_molecules_are_never_trained_on(trained, tiny_grid_data):
    out, summary = trained
    split = api.load_model(out).card["split"]
    assert split["val_molecules"] and not set(split["val_molecules"]) & set(split["train_molecules"])
    assert summary["n_train"] + summary["n_val"] == len(Dataset(tiny_grid_data))


def test_split_by_molecule_keeps_conformers_together():
    ids = [f"r{i}" for i in range(8)]
    names = ["a", "a", "b", "b", "c", "c", "d", "d"]
    train, val = split_by_molecule(ids, names, 0.25, seed=1)
    assert len(val) == 2 and {names[ids.index(i)] for i in val}.isdisjoint({names[ids.index(i)] for i in train})
    assert split_by_molecule(ids, names, 0.0)[1] == []
    assert split_by_molecule(ids, names, 0.5, held_out=["d"])[1] == ["r6", "r7"]


def test_loaded_model_predicts_what_was_trained_and_normalises(trained):
    out, _ = trained
    model = api.load_model(out)
    water = molecule.builtin("water")
    a = api.predict(model, water)
    b = api.predict(api.load_model(out), water)
    np.testing.assert_array_equal(a["density"], b["density"])
    assert np.all(a["density"] >= 0) and abs(a["n_electrons"] - 8) < 1e-3
    assert a["grid"].shape == tuple(model.card["grid"]["box_shape"] for _ in range(3))


def test_resolution_transfer_keeps_the_electron_count_and_the_function(trained):
    model = api.load_model(trained[0])
    water = molecule.builtin("water")
    coarse, fine = api.predict(model, water), api.predict(model, water, refine=2)
    assert fine["grid"].shape == tuple(2 * n for n in coarse["grid"].shape)
    assert abs(fine["n_electrons"] - 8) < 1e-3
    # The finer prediction sampled at the coarse points is close to the coarse prediction: measured 0.027 for
    # this model, whose coarse predictions of methane and water differ by 0.13 (a wrong molecule, or a fine box
    # shifted by one fine voxel, fails).
    diff = np.abs(fine["density"][::2, ::2, ::2] - coarse["density"]).sum() / coarse["density"].sum()
    assert diff < 0.06


def test_prediction_is_a_differentiable_pure_function(trained):
    model = api.load_model(trained[0])
    voxel_volume = model.card["grid"]["spacing"] ** 3  # Bohr^3

    def inputs(mol):  # [1, nx, ny, nz, c] on the molecule's own box (all boxes have the model's shape)
        grid = grid_density.box_for(mol.positions, model.card)
        return jnp.asarray(grid_density.input_fields(model.card, mol, model.level, grid))

    x = inputs(molecule.builtin("water"))
    n = jnp.array([8.0])

    def charge_in_half_box(x):  # electrons at x < centre: a sum the normalisation to N ties to the whole box
        rho = grid_density.predict_density(model.module, model.params, x, n, voxel_volume)
        return rho[0, :10].sum() * voxel_volume

    response = jax.jit(jax.grad(charge_in_half_box))(x)  # d q / d v(r): a density response
    assert response.shape == x.shape and float(jnp.abs(response).max()) > 0
    # The gradient is the derivative: along a smooth direction d (a wave along x, so that the box's total
    # changes and the normalisation's share of the derivative counts), grad q . d equals the central difference
    # [q(x + h d) - q(x - h d)] / (2 h): inputs are standardised, h = 0.03 keeps the O(h^2) truncation and the
    # float32 round-off (~1e-7 / h) near 1e-4 (measured 2e-5); dropping the normalisation's derivative is off by 130 %.
    d = jnp.sin(jnp.arange(x.shape[1]) / 3.0)[None, :, None, None, None] * jnp.ones_like(x)
    q, h = jax.jit(charge_in_half_box), 0.03
    numeric = (float(q(x + h * d)) - float(q(x - h * d))) / (2 * h)
    assert float(jnp.vdot(response, d)) == pytest.approx(numeric, rel=1e-2)
    # Batching: three different molecules (one with another electron count), vmapped and as one native batch,
    # give each molecule's own prediction: nothing leaks between samples (e.g. a normalisation over the batch).
    xs = jnp.concatenate([x, inputs(molecule.builtin("h2")), inputs(molecule.builtin("methane"))])  # [3, ...]
    ns = jnp.array([8.0, 2.0, 8.0])

    def predict(x, n):
        return grid_density.predict_density(model.module, model.params, x, n, voxel_volume)

    loop = np.stack([np.asarray(jax.jit(predict)(xi[None], ni[None]))[0] for xi, ni in zip(xs, ns)])
    assert not np.allclose(loop[0], loop[2], rtol=0.05)  # the samples differ (not the same row twice)
    vmapped = jax.jit(jax.vmap(lambda xi, ni: predict(xi[None], ni[None])[0]))(xs, ns)
    np.testing.assert_allclose(vmapped, loop, rtol=1e-5, atol=1e-6 * loop.max())
    np.testing.assert_allclose(jax.jit(predict)(xs, ns), loop, rtol=1e-5, atol=1e-6 * loop.max())
    np.testing.assert_allclose(loop.sum(axis=(1, 2, 3)) * voxel_volume, ns, rtol=1e-5)


def test_evaluate_reports_the_nmae_of_the_predicted_densities(trained, tiny_grid_data):
    # Recomputed from scratch: each record's molecule predicted on its own box (the generator's box, centred on
    # the centroid), NMAE = 100 sum |rho_pred - rho_ref| / sum rho_ref, averaged over the records.
    model = api.load_model(trained[0])
    ds = Dataset(tiny_grid_data)
    ids = [rid for rid in ds.ids if ds.record(rid)["name"] in model.card["split"]["train_molecules"]]
    result = api.evaluate(model, tiny_grid_data, ids)
    assert {"nmae_percent", "rmse", "records"} <= set(result) and result["records"] == len(ids) == 6
    nmae, rmse = [], []
    for rid in ids:
        record = ds.record(rid)
        pred = api.predict(model, molecule.Molecule.from_record(record))
        np.testing.assert_allclose(pred["grid"].origin, record["grid/origin"], atol=1e-9)
        ref = record["grid/rho"].astype(np.float64)
        nmae.append(100 * np.abs(pred["density"] - ref).sum() / ref.sum())
        rmse.append(np.sqrt(np.mean((pred["density"] - ref) ** 2)))
    assert result["nmae_percent"] == pytest.approx(np.mean(nmae), rel=1e-4)
    assert result["rmse"] == pytest.approx(np.mean(rmse), rel=1e-4)


def test_training_resumes_through_the_api(trained, tiny_grid_data, tmp_path):
    config = dataclasses.replace(api.TrainSetup.resolve("fno", TINY).train_config)
    assert config.epochs == 3
    out = str(tmp_path / "m")
    first = api.train("fno", tiny_grid_data, out, TINY, until_epoch=1, progress=False)
    assert first["epochs"] == 1
    assert api.train("fno", tiny_grid_data, out, TINY, progress=False)["epochs"] == 3
    # Stopped after one epoch and resumed, it ends with the weights of the uninterrupted run (same config, seed
    # and data): the resumed epochs start from the saved state, not from a fresh start.
    jax.tree_util.tree_map(np.testing.assert_array_equal, api.load_model(trained[0]).params,
                           api.load_model(out).params)


def test_training_can_start_from_another_models_weights(trained, tiny_grid_data, tmp_path):
    start, _ = trained
    one_epoch = {**TINY, "train": {**TINY["train"], "epochs": 1, "learning_rate": 1e-9}}
    out = str(tmp_path / "m")
    summary = api.train("fno", tiny_grid_data, out, one_epoch, progress=False, init_from=start)
    assert api.load_model(out).card["init_from"] == os.path.abspath(start)
    # at a vanishing learning rate the weights are the start's, and so is the validation loss
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), api.load_model(start).params,
                           api.load_model(out).params)
    fresh = api.train("fno", tiny_grid_data, str(tmp_path / "fresh"), one_epoch, progress=False)
    assert summary["val"]["loss"] < 0.9 * fresh["val"]["loss"]
    with pytest.raises(ValueError, match="its model_config"):
        api.train("fno", tiny_grid_data, str(tmp_path / "wide"), {**one_epoch, "model": {"width": 5}},
                  progress=False, init_from=start)


def test_bad_configs_are_named():
    with pytest.raises(ValueError, match="unknown fno config field"):
        api.TrainSetup.resolve("fno", {"model": {"widht": 3}})
    with pytest.raises(ValueError, match="unknown config section"):
        api.TrainSetup.resolve("fno", {"modle": {}})
    with pytest.raises(ValueError, match="unknown input field"):
        api.TrainSetup.resolve("fno", {"task": {"inputs": ["nonsense"]}})


EXPERIMENT_CONFIGS = os.path.join(REPO, "experiments", "configs")
TRAINING_CONFIGS = sorted(f for f in os.listdir(EXPERIMENT_CONFIGS)
                          if f.split("_")[0] in api.KINDS and f not in ("deepscf_ablations.json", "kineticnet_ofdft.json"))


@pytest.mark.parametrize("name", TRAINING_CONFIGS)
def test_experiment_configs_resolve_as_train_reads_them(name):
    # what `dft-operators train KIND --config experiments/configs/NAME` reads: the base chain resolved, the
    # experiment scripts' "data" and "kind" keys aside
    config = read_config(os.path.join(EXPERIMENT_CONFIGS, name))
    kind = config.pop("kind", name.split("_")[0])
    assert "base" not in config and api.TrainSetup.resolve(kind, config).kind == kind


def test_a_config_file_overrides_its_base(tmp_path):
    base = os.path.abspath(os.path.join(EXPERIMENT_CONFIGS, "densnet_ethanol.json"))
    variant = tmp_path / "variant.json"
    variant.write_text(json.dumps({"base": base, "task": {"force_weight": 5.0}, "train": {"epochs": 7}}))
    original, changed = api.TrainSetup.resolve("densnet", base), api.TrainSetup.resolve("densnet", str(variant))
    assert (changed.task.force_weight, changed.train_config.epochs) == (5.0, 7)
    assert changed.task.density_weight == original.task.density_weight  # the rest of each section inherited
    assert changed.train_config.learning_rate == original.train_config.learning_rate
    assert changed.model_config == original.model_config
    variant.write_text(json.dumps({"base": "variant.json"}))
    with pytest.raises(ValueError, match="config bases form a loop"):
        api.TrainSetup.resolve("densnet", str(variant))


def test_delta_learning_fno_starts_from_rho0_and_transfers_resolution(tiny_grid_data, tmp_path):
    # The FNO's "delta" head learns rho - rho0 from the potential and rho0; zero-initialised, it starts from
    # rho0, so after one epoch its NMAE is near rho0's (84 % when the head started from random weights). With
    # the local differential path (the QM9 design) through training, saving, loading and a finer grid.
    config = {"preset": "tiny", "model": {"head": "delta", "local": True}, "task": {"inputs": ["v_ext", "rho0"], "residual": True},
              "train": {"epochs": 1, "val_fraction": 0.25}}
    summary = api.train("fno", tiny_grid_data, str(tmp_path / "delta"), config, progress=False)
    val = summary["val"]
    assert val["nmae_percent"] < 1.5 * val["rho0_nmae_percent"]
    model = api.load_model(str(tmp_path / "delta"))
    water = molecule.builtin("water")
    coarse, fine = api.predict(model, water), api.predict(model, water, refine=2)
    assert abs(fine["n_electrons"] - 8) < 1e-3 and np.all(fine["density"] >= 0)
    diff = np.abs(fine["density"][::2, ::2, ::2] - coarse["density"]).sum() / coarse["density"].sum()
    assert diff < 0.06
    with pytest.raises(ValueError, match="does not fit a task with residual"):
        api.train("fno", tiny_grid_data, str(tmp_path / "mismatch"), {**config, "model": {}}, progress=False)
