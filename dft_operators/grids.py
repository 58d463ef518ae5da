"""Grids: uniform boxes (for the FNO and DeepSCF) and quadrature grids (for KineticNet).

Layout convention: fields on a box are ``[nx, ny, nz]`` (channels-last ``[..., nx, ny, nz, c]`` in
models), x slowest, z fastest, as in Gaussian cube files.  A box is treated as periodic with period
``shape * spacing`` for spectral resampling, so it should enclose the density with a margin.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

# Bytes one float64 field value costs; used to refuse boxes that would not fit in memory.
_BYTES_PER_VALUE = 8
MAX_GRID_POINTS = 256**3
# Bohr an atom keeps from the faces of a box made for its density: about where a valence density has fallen
# below 1e-4 of its peak (prediction boxes, cube files).
DENSITY_MARGIN = 5.0
# Bohr: where padding points and atoms are put, beyond every cutoff of every real point or atom.
FAR = 1.0e4


class GridError(ValueError):
    """A grid that cannot be built (too large, empty, inconsistent)."""


@dataclasses.dataclass(frozen=True)
class UniformGrid:
    """A uniform box.

    Attributes:
      origin: position of voxel (0, 0, 0) in Bohr, tuple of 3 floats.
      spacing: voxel edge in Bohr.
      shape: number of points along x, y, z.
    """

    origin: tuple[float, float, float]
    spacing: float
    shape: tuple[int, int, int]

    def __post_init__(self):
        object.__setattr__(self, "origin", tuple(float(x) for x in self.origin))
        object.__setattr__(self, "shape", tuple(int(n) for n in self.shape))
        object.__setattr__(self, "spacing", float(self.spacing))
        if self.spacing <= 0 or min(self.shape) < 2 or len(self.shape) != 3:
            raise GridError(f"invalid box: spacing {self.spacing} Bohr, shape {self.shape}")
        n = int(np.prod(self.shape))
        if n > MAX_GRID_POINTS:
            raise GridError(
                f"box of shape {self.shape} has {n:,} points ({n * _BYTES_PER_VALUE / 2**30:.1f} GiB per field), "
                f"over the limit of {MAX_GRID_POINTS:,}: use a larger spacing or a smaller box")

    @property
    def n_points(self) -> int:
        return int(np.prod(self.shape))

    @property
    def voxel_volume(self) -> float:
        """Volume of one voxel in Bohr^3."""
        return self.spacing**3

    @property
    def lengths(self) -> np.ndarray:
        """Periodic extent of the box in Bohr, [3]."""
        return np.asarray(self.shape) * self.spacing

    @property
    def center(self) -> np.ndarray:
        """The point the box is centred on (Bohr), [3]."""
        return np.asarray(self.origin) + 0.5 * (np.asarray(self.shape) - 1) * self.spacing

    def axes(self) -> list[np.ndarray]:
        """Coordinates along x, y, z in Bohr: three arrays [nx], [ny], [nz]."""
        return [o + self.spacing * np.arange(n) for o, n in zip(self.origin, self.shape)]

    def points(self) -> np.ndarray:
        """All points in Bohr, [nx, ny, nz, 3] (x slowest)."""
        return np.stack(np.meshgrid(*self.axes(), indexing="ij"), axis=-1)

    def integrate(self, field):
        """Riemann sum of a field [..., nx, ny, nz] times the voxel volume."""
        return field.sum(axis=(-3, -2, -1)) * self.voxel_volume

    def refined(self, factor: int) -> "UniformGrid":
        """The same periodic box sampled ``factor`` times finer along each axis (same origin)."""
        return UniformGrid(self.origin, self.spacing / factor, tuple(n * factor for n in self.shape))

    @staticmethod
    def centered(center, spacing: float, shape) -> "UniformGrid":
        """A box of the given shape and spacing (Bohr) whose middle is ``center`` ([3], Bohr)."""
        shape = tuple(int(n) for n in np.broadcast_to(shape, (3,)))
        origin = np.asarray(center, float) - 0.5 * (np.asarray(shape) - 1) * spacing
        return UniformGrid(tuple(origin), spacing, shape)

    @staticmethod
    def around(positions, spacing: float, margin: float = DENSITY_MARGIN, multiple: int = 2) -> "UniformGrid":
        """The smallest box enclosing ``positions`` ([n_atoms, 3], Bohr) with ``margin`` Bohr on each side.

        The point count along each axis is rounded up to a ``multiple`` (even by default, which FFTs like).
        """
        positions = np.asarray(positions, float).reshape(-1, 3)
        lo, hi = positions.min(0) - margin, positions.max(0) + margin
        shape = np.ceil((hi - lo) / spacing).astype(int) + 1
        shape = (-(-shape // multiple) * multiple).astype(int)
        return UniformGrid.centered(0.5 * (lo + hi), spacing, tuple(shape))


def _resample_axis(spectrum: jax.Array, n_new: int, axis: int) -> jax.Array:
    """Zero-pads or truncates one axis of a full FFT spectrum, splitting or merging the Nyquist term."""
    n_old = spectrum.shape[axis]
    if n_new == n_old:
        return spectrum
    spectrum = jnp.moveaxis(spectrum, axis, 0)
    n = min(n_old, n_new)
    n_pos = n // 2 + 1  # 0 .. n//2 (the last one is the Nyquist term when n is even)
    n_neg = n - n_pos
    out = jnp.zeros((n_new,) + spectrum.shape[1:], spectrum.dtype)
    out = out.at[:n_pos].set(spectrum[:n_pos])
    if n_neg:
        out = out.at[n_new - n_neg:].set(spectrum[n_old - n_neg:])
    if n % 2 == 0:
        if n_new < n_old:  # the new Nyquist term collects +k and -k
            out = out.at[n // 2].add(spectrum[n_old - n // 2])
        else:  # the old Nyquist term is shared between +k and -k
            out = out.at[n // 2].multiply(0.5)
            out = out.at[n_new - n // 2].set(out[n // 2])
    return jnp.moveaxis(out, 0, axis)


def spectral_resample(field: jax.Array, shape) -> jax.Array:
    """Band-limited (Fourier) resampling of a periodic field to a new grid shape.

    Args:
      field: real values [..., nx, ny, nz] on a periodic box.
      shape: the new (mx, my, mz); the box (origin, extent) stays the same.
    Returns:
      real values [..., mx, my, mz]; a band-limited field is reproduced exactly at the new points.
    """
    old = field.shape[-3:]
    spectrum = jnp.fft.fftn(field, axes=(-3, -2, -1))
    for k, n_new in enumerate(shape):
        spectrum = _resample_axis(spectrum, int(n_new), field.ndim - 3 + k)
    scale = np.prod(shape) / np.prod(old)
    return jnp.real(jnp.fft.ifftn(spectrum, axes=(-3, -2, -1))) * scale


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class QuadratureGrid:
    """Molecular quadrature: points [n_points, 3] in Bohr and weights [n_points] in Bohr^3.

    Padding points (for batching to a fixed size) have weight 0 and are masked out of every integral.
    """

    points: jax.Array
    weights: jax.Array

    @property
    def n_points(self) -> int:
        return int(self.points.shape[0])

    @property
    def mask(self):
        return self.weights > 0

    def integrate(self, values):
        """Quadrature sum over the last axis of ``values`` [..., n_points]."""
        return (values * self.weights).sum(-1)

    def padded(self, n_points: int) -> "QuadratureGrid":
        """The grid padded with zero-weight points to ``n_points`` (at ``FAR``, beyond every cutoff)."""
        extra = n_points - self.n_points
        if extra < 0:
            raise GridError(f"cannot pad a grid of {self.n_points} points to {n_points}")
        pad_points = np.full((extra, 3), FAR)
        xp = jnp if isinstance(self.points, jax.Array) else np
        return QuadratureGrid(xp.concatenate([self.points, pad_points]), xp.concatenate([self.weights, np.zeros(extra)]))


def bucket_size(n: int, minimum: int = 1) -> int:
    """The padded size for ``n`` items: the next power of two (jraph's rule), so jit sees few shapes."""
    return max(minimum, 1 << int(np.ceil(np.log2(max(n, 1)))))
