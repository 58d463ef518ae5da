"""Train/validation/test splits by molecule, so that held-out sets are zero-shot (no shared molecule)."""

from __future__ import annotations

import numpy as np


def split_by_molecule(ids: list[str], molecules: list[str], val_fraction: float, seed: int = 0,
                      held_out: list[str] | None = None) -> tuple[list[str], list[str]]:
    """Splits record ids so that all conformers of a molecule fall on one side.

    Args:
      ids, molecules: record ids and what identifies each one's molecule (canonical SMILES, else a name),
        so that two conformers of one molecule never fall on both sides.
      val_fraction: fraction of molecules (at least one when there are two or more) for validation.
      seed: seeds the choice.
      held_out: molecules (as in ``molecules``) to put in the validation side explicitly (overrides the fraction).
    Returns:
      (train ids, validation ids).
    """
    distinct = sorted(set(molecules))
    if held_out is not None:
        val = set(held_out)
    else:
        n_val = int(round(val_fraction * len(distinct)))
        n_val = min(max(n_val, 1 if len(distinct) > 1 and val_fraction > 0 else 0), len(distinct) - 1)
        val = set(np.random.default_rng(seed).permutation(distinct)[:n_val].tolist())
    train_ids = [i for i, m in zip(ids, molecules) if m not in val]
    val_ids = [i for i, m in zip(ids, molecules) if m in val]
    return train_ids, val_ids


def first_molecules(ids: list[str], molecules: list[str], n: int, seed: int = 0) -> list[str]:
    """The ids of the records of ``n`` molecules drawn by ``seed``: the first n of one seeded order of the
    distinct molecules, so that the draws for growing n are nested (a scaling study's training sets)."""
    order = np.random.default_rng(seed).permutation(sorted(set(molecules))).tolist()
    if n > len(order):
        raise ValueError(f"{n} training molecules asked for; the training side holds {len(order)}")
    keep = set(order[:n])
    return [i for i, m in zip(ids, molecules) if m in keep]
