"""Each shipped model reproduces the check stored in its card, and that check agrees in magnitude with the
card's held-out test metrics, so a retrained, swapped or broken model fails here.

The checks are written by ``python experiments/card_checks.py --write`` (its docstring defines them): the
card's test metrics recomputed by ``dft_operators.model_checks`` on its first check molecule at the
built-in geometry.
"""

import pytest

from dft_operators import api, kinds, model_checks

SHIPPED = {m["name"]: m["kind"] for m in api.list_models()}
# A check on one molecule lies within this factor of the card's mean over its held-out records ...
FACTOR = 3.0
# ... except absolute energy errors, only bounded above: one geometry's can be far below the mean (ethanol's
# 0.0075 kcal/mol against 0.15), while a broken model's are kcal/mol or more.
UPPER_BOUND_ONLY = {"energy_error_kcal_mol"}


def test_every_model_kind_has_a_check():
    assert SHIPPED and set(SHIPPED.values()) <= set(kinds.KINDS)
    assert all(callable(getattr(model_checks, entry.check, None)) for entry in kinds.KINDS.values())


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_model_reproduces_its_card(name, one_pyscf_thread):
    model = api.load_model(name)
    checks = model.card.get("checks")
    assert checks, f"{name}: no checks in its card; run python experiments/card_checks.py --write"
    first = checks["molecules"][0]
    assert first in model.card["test_molecules"]
    values = model_checks.check(model, model_checks.check_molecule(first))
    for metric, value in values.items():
        stored, tol = checks[metric][0], checks["tolerance"][metric]
        assert abs(value - stored) <= tol, (f"{name} {metric} on {first}: {value:.6g}, its card's check {stored:.6g} "
                                            f"(tolerance {tol:.2g}); retrained? rerun {checks['command']} --write")
        card_value = model.card["test_metrics"][metric]
        assert value <= FACTOR * card_value, f"{name} {metric} {value:.4g}: over {FACTOR}x the card's {card_value:.4g}"
        if metric not in UPPER_BOUND_ONLY:
            assert value >= card_value / FACTOR, f"{name} {metric} {value:.4g}: under 1/{FACTOR} of {card_value:.4g}"
