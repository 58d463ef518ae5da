"""Atomic fingerprints on a box: element-resolved, atom-centred Gaussians (DeepSCF's input channels).

Beside the atomic-guess density rho0, DeepSCF feeds its CNN fields that say which element sits where.
Channel ``k = e * len(widths) + w`` holds, for element ``elements[e]`` and width ``widths[w]`` = s,

    g_{e,s}(r) = sum_{atoms a of element e} (2 pi s^2)^(-3/2) exp(-|r - R_a|^2 / (2 s^2))   [1/Bohr^3],

a sum of normalised Gaussians, so each channel integrates to the number of atoms of its element (when the
box holds the Gaussians). The default channels (``channel_names()``), 15 of them, are

    H/0.5 H/1.0 H/2.0  C/0.5 C/1.0 C/2.0  N/0.5 N/1.0 N/2.0  O/0.5 O/1.0 O/2.0  F/0.5 F/1.0 F/2.0

(element/width in Bohr): the narrow ones mark the nuclei, the wide ones the bonding region and the
neighbourhood. They depend only on the geometry (``numbers``, ``positions``) and the box, so they are
computed when a dataset is read rather than stored in it. Pure NumPy; channels-last ``[nx, ny, nz, c]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dft_operators.grids import UniformGrid
from dft_operators.molecule import SYMBOLS, atomic_number

ELEMENTS = ("H", "C", "N", "O", "F")  # the elements with a channel, in channel order
WIDTHS = (0.5, 1.0, 2.0)  # Gaussian standard deviations in Bohr, in channel order within an element


def channel_names(elements: Sequence[str] = ELEMENTS, widths: Sequence[float] = WIDTHS) -> list[str]:
    """The channel labels ``"<element>/<width in Bohr>"`` in channel order."""
    return [f"{e}/{s:g}" for e in elements for s in widths]


def n_channels(elements: Sequence[str] = ELEMENTS, widths: Sequence[float] = WIDTHS) -> int:
    """Number of fingerprint channels, ``len(elements) * len(widths)``."""
    return len(elements) * len(widths)


def _gaussians_1d(axis: np.ndarray, centres: np.ndarray, width: float) -> np.ndarray:
    """exp(-(x - X_a)^2 / (2 s^2)) for each atom and grid coordinate, [n_atoms, n]."""
    return np.exp(-((axis[None, :] - centres[:, None]) ** 2) / (2.0 * width**2))


def atomic_fingerprints(numbers, positions, grid: UniformGrid, elements: Sequence[str] = ELEMENTS,
                        widths: Sequence[float] = WIDTHS) -> np.ndarray:
    """The fingerprint channels of a geometry on a box (see the module docstring for the formula).

    A 3D Gaussian is the product of three 1D ones, so each channel is ``einsum('ai,aj,ak->ijk')`` of
    per-atom 1D factors: O(n_atoms * n_points) work, no [n_points, n_atoms] distance table.

    Args:
      numbers: atomic numbers, int [n_atoms].
      positions: nuclear positions in Bohr, [n_atoms, 3].
      grid: the box (Bohr).
      elements: element symbols with a channel each (default ``ELEMENTS``).
      widths: Gaussian standard deviations in Bohr (default ``WIDTHS``).
    Returns:
      float64 [nx, ny, nz, len(elements) * len(widths)] in 1/Bohr^3, channel ``e * len(widths) + w``.
    Raises:
      ValueError: an atom's element has no channel (the fingerprints could not tell it apart).
    """
    numbers = np.asarray(numbers, dtype=np.int64).reshape(-1)
    positions = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    element_numbers = [atomic_number(e) for e in elements]
    unknown = sorted({SYMBOLS[z] for z in numbers} - {SYMBOLS[z] for z in element_numbers})
    if unknown:
        raise ValueError(f"no fingerprint channel for element(s) {unknown}; channels exist for {', '.join(elements)}")
    axes = grid.axes()
    out = np.zeros(grid.shape + (len(elements) * len(widths),))
    for e, z in enumerate(element_numbers):
        centres = positions[numbers == z]  # [n_e, 3]
        if not len(centres):
            continue
        for w, width in enumerate(widths):
            gx, gy, gz = (_gaussians_1d(axes[d], centres[:, d], width) for d in range(3))  # [n_e, n_d] each
            norm = (2.0 * np.pi * width**2) ** -1.5
            out[..., e * len(widths) + w] = norm * np.einsum("ai,aj,ak->ijk", gx, gy, gz)  # [nx, ny, nz]
    return out
