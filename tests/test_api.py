"""The Python API behind the command line: train, load, predict, evaluate, on a tiny FNO."""

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dft_operators import api, molecule
from dft_operators.data.splits import split_by_molecule
from dft_operators.io.dataset import Dataset
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
    # The finer prediction sampled at the coarse points is close to the coarse prediction.
    diff = np.abs(fine["density"][::2, ::2, ::2] - coarse["density"]).sum() / coarse["density"].sum()
    assert diff < 0.25


def test_prediction_is_a_differentiable_pure_function(trained):
    model = api.load_model(trained[0])
    water = molecule.builtin("water")
    grid = grid_density.box_for(water.positions, model.card)
    x = jnp.asarray(grid_density.input_fields(model.card, water, model.level, grid))
    n = jnp.array([8.0])

    def density_at_centre(x):
        rho = grid_density.predict_density(model.module, model.params, x, n, grid.voxel_volume)
        return rho[0, 10, 10, 10]

    response = jax.jit(jax.grad(density_at_centre))(x)  # d rho(r0) / d v(r), the density response
    assert response.shape == x.shape and bool(jnp.all(jnp.isfinite(response)))
    assert float(jnp.abs(response).max()) > 0
    batched = jax.vmap(lambda xi: grid_density.predict_density(model.module, model.params, xi[None], n,
                                                               grid.voxel_volume))(jnp.stack([x[0], x[0]]))
    np.testing.assert_allclose(batched[0], batched[1], rtol=1e-5)


def test_evaluate_reports_the_contract_metric(trained, tiny_grid_data):
    result = api.evaluate(trained[0], tiny_grid_data)
    assert {"nmae_percent", "rmse", "records"} <= set(result) and result["records"] == 8


def test_training_resumes_through_the_api(tiny_grid_data, tmp_path):
    config = dataclasses.replace(api.TrainSetup.resolve("fno", TINY).train_config)
    assert config.epochs == 3
    out = str(tmp_path / "m")
    first = api.train("fno", tiny_grid_data, out, TINY, until_epoch=1, progress=False)
    assert first["epochs"] == 1
    assert api.train("fno", tiny_grid_data, out, TINY, progress=False)["epochs"] == 3


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
