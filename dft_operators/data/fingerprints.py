"""Atomic fingerprints on a box: element-resolved, atom-centred Gaussians (DeepSCF's input channels).

Beside the atomic-guess density rho0, DeepSCF feeds its CNN fields that say which element sits where.
Channel ``k = e * len(widths) + w`` holds, for element ``elements[e]`` and width ``widths[w]`` = s,

    g_{e,s}(r) = sum_{atoms a of element e} (2 pi s^2)^(-3/2) exp(-|r - R_a|^2 / (2 s^2))   [1/Bohr^3],

a sum of normalised Gaussians, so each channel integrates to the number of atoms of its element (when the
box holds the Gaussians). The default channels (``channel_names()``), 15 of them, are

    H/0.5 H/1.0 H/2.0  C/0.5 C/1.0 C/2.0  N/0.5 N/1.0 N/2.0  O/0.5 O/1.0 O/2.0  F/0.5 F/1.0 F/2.0

(element/width in Bohr): the narrow ones mark the nuclei, the wide ones the bonding region and the
neighbourhood. They depend only on the geometry and the box, so they are computed where they are used
(on the device, inside the jitted step if one likes) rather than stored in a dataset.

One implementation, :func:`box_fingerprints`, in jax.numpy: jitted (box and channels static), vmappable
over a batch of padded molecules (:func:`pad_atoms`), float32 by default. A 3D Gaussian is the product
of three 1D ones, so with per-atom factors ``G_d[a, i, w] = exp(-(x_d,i - X_a,d)^2 / (2 s_w^2))`` every
channel is one contraction over atoms,

    out[i, j, k, e, w] = norm_w * sum_a onehot[a, e] * G_x[a, i, w] * G_y[a, j, w] * G_z[a, k, w],

with no [n_points, n_atoms] distance table. It is done as one matrix product whose result is already
channels-last: rows (i, j), columns (k, e, w), summed over (a, w') with a factor delta_{w w'} in the
right matrix. That costs len(widths) times the minimal O(n_atoms * n_points * c) multiply-adds but is a
single GEMM with no transpose of the output, also under vmap (where the plain three-factor einsum ran
10x slower on a CPU).

The exponent is evaluated stably: the offset ``x_d,i - X_a,d = (o_d - X_a,d) + h * i`` is formed from
the small difference ``o_d - X_a,d`` first, never from large absolute coordinates, so moving atoms and
box together leaves the field unchanged up to the float32 rounding of the inputs; exp of a large
negative number underflows to 0, never NaN.

On the device an atom is one-hot encoded against ``elements``: a padding atom (``atom_mask`` False) and
an atom whose element has no channel both contribute exactly nothing. The host entry
:func:`atomic_fingerprints` refuses the latter with a ValueError, since the fingerprints could not tell
it apart; batched callers check their data once with :func:`check_elements`.
Layout: channels-last ``[nx, ny, nz, c]`` (batched ``[batch, nx, ny, nz, c]``), x slowest.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from dft_operators.grids import UniformGrid, bucket_size
from dft_operators.molecule import SYMBOLS, atomic_number

ELEMENTS = ("H", "C", "N", "O", "F")  # the elements with a channel, in channel order
WIDTHS = (0.5, 1.0, 2.0)  # Gaussian standard deviations in Bohr, in channel order within an element


def channel_names(elements: Sequence[str] = ELEMENTS, widths: Sequence[float] = WIDTHS) -> list[str]:
    """The channel labels ``"<element>/<width in Bohr>"`` in channel order."""
    return [f"{e}/{s:g}" for e in elements for s in widths]


def n_channels(elements: Sequence[str] = ELEMENTS, widths: Sequence[float] = WIDTHS) -> int:
    """Number of fingerprint channels, ``len(elements) * len(widths)``."""
    return len(elements) * len(widths)


def check_elements(numbers, elements: Sequence[str] = ELEMENTS, atom_mask=None) -> None:
    """Raises ValueError if a real atom's element has no channel in ``elements``.

    Args:
      numbers: atomic numbers, int, any shape (e.g. [n_atoms] or a padded batch [batch, n_atoms_padded]).
      elements: element symbols with a channel each.
      atom_mask: bool of the shape of ``numbers`` (default all True); padding atoms are not checked.
    """
    numbers = np.asarray(numbers, dtype=np.int64)
    real = numbers if atom_mask is None else numbers[np.asarray(atom_mask, bool)]
    unknown = sorted(set(real.reshape(-1).tolist()) - {atomic_number(e) for e in elements})
    if unknown:
        names = [SYMBOLS[z] if 0 < z < len(SYMBOLS) else f"Z={z}" for z in unknown]
        raise ValueError(f"no fingerprint channel for element(s) {names}; channels exist for {', '.join(elements)}")


def pad_atoms(numbers, positions, n_max: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pads one molecule's atoms to ``n_max`` so that molecules of different sizes batch together.

    Args:
      numbers: atomic numbers, int [n_atoms].
      positions: positions in Bohr, [n_atoms, 3].
      n_max: padded atom count, at least n_atoms.
    Returns:
      (numbers int32 [n_max] with 0 for padding, positions float64 [n_max, 3] with 0 for padding,
      mask bool [n_max], True for real atoms).
    Raises:
      ValueError: more than ``n_max`` atoms.
    """
    numbers = np.asarray(numbers, dtype=np.int32).reshape(-1)
    positions = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    n = len(numbers)
    if n > n_max or len(positions) != n:
        raise ValueError(f"cannot pad {n} atoms ({len(positions)} positions) to n_max={n_max}")
    mask = np.arange(n_max) < n
    return (np.concatenate([numbers, np.zeros(n_max - n, np.int32)]),
            np.concatenate([positions, np.zeros((n_max - n, 3))]), mask)


@functools.partial(jax.jit, static_argnames=("spacing", "shape", "elements", "widths", "dtype"))
def _box_fingerprints(numbers, positions, atom_mask, origin, spacing, shape, elements, widths, dtype):
    positions = positions.astype(dtype)
    origin = origin.astype(dtype)
    element_numbers = jnp.asarray([atomic_number(e) for e in elements])  # [n_e]
    onehot = (numbers[:, None] == element_numbers[None, :]) & atom_mask.astype(bool)[:, None]  # [n_atoms, n_e]
    sigma = jnp.asarray(widths, dtype)  # [n_w]
    offset = origin[None, :] - positions  # [n_atoms, 3], small: the stable part of x_i - X_a
    factors = []
    for d in range(3):
        delta = offset[:, d, None] + spacing * jnp.arange(shape[d], dtype=dtype)[None, :]  # [n_atoms, n_d]
        factors.append(jnp.exp(-(delta[..., None] / sigma) ** 2 / 2))  # [n_atoms, n_d, n_w]
    gx, gy, gz = factors
    n_atoms, n_w = positions.shape[0], len(widths)
    norm = (2 * jnp.pi * sigma**2) ** -1.5  # [n_w] 1/Bohr^3
    lhs = gx[:, :, None, :] * gy[:, None, :, :]  # [n_atoms, nx, ny, n_w]
    lhs = jnp.transpose(lhs, (1, 2, 0, 3)).reshape(shape[0] * shape[1], n_atoms * n_w)  # [nx*ny, n_atoms*n_w]
    rhs = onehot.astype(dtype)[:, None, :, None] * gz[:, :, None, :] * norm  # [n_atoms, nz, n_e, n_w]
    rhs = rhs[:, None] * jnp.eye(n_w, dtype=dtype)[None, :, None, None, :]  # [n_atoms, n_w, nz, n_e, n_w]
    out = jnp.dot(lhs, rhs.reshape(n_atoms * n_w, -1),
                  precision=jax.lax.Precision.HIGHEST)  # [nx*ny, nz*n_e*n_w]; HIGHEST: no TF32 on GPUs
    return out.reshape(tuple(shape) + (len(elements) * len(widths),))  # channel e * n_w + w


def box_fingerprints(numbers, positions, atom_mask, origin, spacing: float, shape: tuple[int, int, int],
                     elements: Sequence[str] = ELEMENTS, widths: Sequence[float] = WIDTHS,
                     dtype=jnp.float32) -> jax.Array:
    """The fingerprint channels of one (padded) molecule on a box, on the device (module docstring).

    Jitted with the box (``spacing``, ``shape``), ``elements``, ``widths`` and ``dtype`` static: new
    positions or origins of the same padded size reuse the compiled code. Vmap over a batch with the
    static arguments bound, e.g. ``jax.vmap(lambda z, r, m, o: box_fingerprints(z, r, m, o, h, shape))``.

    Args:
      numbers: atomic numbers, int [n_atoms_padded].
      positions: nuclear positions in Bohr, [n_atoms_padded, 3].
      atom_mask: bool or 0/1 [n_atoms_padded]; masked-out (padding) atoms contribute nothing.
      origin: the first grid point in Bohr, [3]; point (i, j, k) is ``origin + spacing * (i, j, k)``
        (as ``UniformGrid.axes()``).
      spacing: grid spacing in Bohr.
      shape: points along x, y, z.
      elements: element symbols with a channel each (default ``ELEMENTS``).
      widths: Gaussian standard deviations in Bohr (default ``WIDTHS``).
      dtype: floating type of the computation and the result.
    Returns:
      [nx, ny, nz, len(elements) * len(widths)] in 1/Bohr^3, channel ``e * len(widths) + w``. Atoms of an
      element without a channel contribute nothing (see :func:`check_elements`).
    """
    if jnp.ndim(numbers) != 1 or jnp.shape(positions) != (jnp.shape(numbers)[0], 3) \
            or jnp.shape(atom_mask) != jnp.shape(numbers) or jnp.shape(origin) != (3,):
        raise ValueError(f"expected numbers [n], positions [n, 3], atom_mask [n], origin [3]; got "
                         f"{jnp.shape(numbers)}, {jnp.shape(positions)}, {jnp.shape(atom_mask)}, {jnp.shape(origin)}")
    return _box_fingerprints(jnp.asarray(numbers), jnp.asarray(positions), jnp.asarray(atom_mask),
                             jnp.asarray(origin), spacing=float(spacing), shape=tuple(int(n) for n in shape),
                             elements=tuple(elements), widths=tuple(float(s) for s in widths),
                             dtype=jnp.dtype(dtype))


def atomic_fingerprints(numbers, positions, grid: UniformGrid, elements: Sequence[str] = ELEMENTS,
                        widths: Sequence[float] = WIDTHS) -> np.ndarray:
    """Host entry: the fingerprint channels of one geometry on a box, as a NumPy array.

    Checks the elements, takes positions relative to the box origin in float64 (so that float32 sees
    only small coordinates), pads the atoms to the next power of two (so that jit compiles a few sizes,
    not one per atom count) and calls :func:`box_fingerprints`.

    Args:
      numbers: atomic numbers, int [n_atoms].
      positions: nuclear positions in Bohr, [n_atoms, 3].
      grid: the box (Bohr).
      elements: element symbols with a channel each (default ``ELEMENTS``).
      widths: Gaussian standard deviations in Bohr (default ``WIDTHS``).
    Returns:
      float32 [nx, ny, nz, len(elements) * len(widths)] in 1/Bohr^3, channel ``e * len(widths) + w``.
    Raises:
      ValueError: an atom's element has no channel (the fingerprints could not tell it apart).
    """
    numbers = np.asarray(numbers, dtype=np.int64).reshape(-1)
    check_elements(numbers, elements)
    relative = np.asarray(positions, np.float64).reshape(-1, 3) - np.asarray(grid.origin)  # float64 on the host
    padded = pad_atoms(numbers, relative, bucket_size(len(numbers)))
    return np.asarray(box_fingerprints(*padded, np.zeros(3), grid.spacing, grid.shape, elements, widths))
