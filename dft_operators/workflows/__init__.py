"""End-to-end workflows that tie data, models and training together, one module per family of models.

Every workflow module implements :class:`Workflow` with module-level functions, and ``kinds.KINDS`` names
it for its model kinds; ``api`` and ``cli`` call only these three functions, never a kind's own.
"""

from __future__ import annotations

from typing import Any, Protocol

from dft_operators.training import loop

EVAL_BATCH = 4  # records per evaluation batch


class Workflow(Protocol):
    """What a model kind's workflow provides (a module with these functions satisfies it structurally).

    ``card`` is the model card (``io.cards``), ``module`` and ``params`` the Flax module and its weights,
    ``ds`` an ``io.dataset.Dataset``, ``ids`` its record ids, ``task`` the kind's task dataclass.
    """

    def prepare(self, ds, train_ids: list[str], val_ids: list[str], task, module) -> tuple[Any, Any, Any, dict]:
        """(``training.loop.Objective``, training source, validation source or None, card entries)."""

    def metrics(self, card: dict, module, params, ds, ids: list[str]) -> dict[str, float]:
        """Mean metrics of a trained model on dataset records (``nmae_percent`` for density models)."""

    def predict(self, card: dict, module, params, molecule, level, **options) -> dict:
        """A molecule's prediction: at least {"grid": UniformGrid, "density" [nx, ny, nz] e/Bohr^3}."""


def evaluate_records(objective: loop.Objective, params, source) -> dict[str, float]:
    """Mean metrics of an objective over a source's rows (``Workflow.metrics``), without the loss."""
    result = loop.evaluate_objective(objective, params, source, batch_size=EVAL_BATCH)
    result.pop("loss", None)
    return result
