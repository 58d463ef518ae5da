"""Splits by molecule: conformers stay together, test sets stay out, scaling-study draws are nested."""

from dft_operators import api
from dft_operators.data.splits import first_molecules
from dft_operators.io.dataset import Dataset


def test_draws_of_growing_size_are_nested_and_keep_conformers_together():
    ids = [f"r{i}" for i in range(12)]
    molecules = [m for m in "abcdef" for _ in range(2)]
    draws = [set(first_molecules(ids, molecules, n, seed=3)) for n in (1, 3, 6)]
    assert draws[0] < draws[1] < draws[2] == set(ids)
    assert all(len(d) == 2 * n for d, n in zip(draws, (1, 3, 6)))
    assert first_molecules(ids, molecules, 3, seed=0) != first_molecules(ids, molecules, 3, seed=1)  # seeded


def test_excluded_molecules_are_on_neither_side(tiny_grid_data):
    ds = Dataset(tiny_grid_data)
    names = dict(zip(ds.ids, ds.attribute("name")))
    setup = api.TrainSetup.resolve("fno", {"preset": "tiny", "held_out": ["water"], "exclude": ["ammonia"],
                                           "max_train_molecules": 1})
    train, val = api.split(ds, setup)
    assert {names[i] for i in val} == {"water"}
    assert len({names[i] for i in train}) == 1 and not {names[i] for i in train} & {"water", "ammonia"}
    assert len(train) == 2  # both conformers of the one training molecule
    everything = api.split(ds, api.TrainSetup.resolve("fno", {"preset": "tiny", "held_out": ["water"]}))
    assert set(train) < set(everything[0]) and "ammonia" in {names[i] for i in everything[0]}
