"""Train/validation/test splits by molecule, so that held-out sets are zero-shot (no shared molecule)."""

from __future__ import annotations

import numpy as np


def split_by_molecule(ids: list[str], names: list[str], val_fraction: float, seed: int = 0,
                      held_out: list[str] | None = None) -> tuple[list[str], list[str]]:
    """Splits record ids so that all conformers of a molecule fall on one side.

    Args:
      ids, names: record ids and the molecule name of each.
      val_fraction: fraction of molecules (at least one when there are two or more) for validation.
      seed: seeds the choice.
      held_out: molecule names to put in the validation side explicitly (overrides the fraction).
    Returns:
      (train ids, validation ids).
    """
    molecules = sorted(set(names))
    if held_out is not None:
        val = set(held_out)
    else:
        n_val = int(round(val_fraction * len(molecules)))
        n_val = min(max(n_val, 1 if len(molecules) > 1 and val_fraction > 0 else 0), len(molecules) - 1)
        val = set(np.random.default_rng(seed).permutation(molecules)[:n_val].tolist())
    train_ids = [i for i, n in zip(ids, names) if n not in val]
    val_ids = [i for i, n in zip(ids, names) if n in val]
    return train_ids, val_ids
