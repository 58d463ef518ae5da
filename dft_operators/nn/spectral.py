"""3D spectral convolution (the Fourier layer of an FNO) for real fields on periodic boxes.

A field f on a periodic box of n = (nx, ny, nz) points is read as the trigonometric polynomial whose
Fourier coefficients are its forward-normalised DFT,

    c_k = (1 / (nx ny nz)) sum_x f(x) exp(-2 pi i k.x / n),

which are the same numbers for every grid on which a band-limited f is sampled above its Nyquist rate.
The layer keeps a few low frequencies, multiplies each by its own complex channel-mixing matrix W_k and
sums the series back on any grid that resolves them:

    g(x) = Re sum_{k kept} (c_k W_k) exp(2 pi i k.x / L)      (x in Bohr, L the box lengths).

So the layer is a map between functions, not between arrays: the same weights act on any grid, and an
output grid finer than the input is spectral zero-padding (exact evaluation of g at the finer points).

Kept frequencies (the four corner blocks of an rfftn spectrum, modes = (m1, m2, m3)):
  kx in {0, ..., m1 - 1} and {-m1, ..., -1}   (2 m1 values, ordered as the FFT orders them)
  ky in {0, ..., m2 - 1} and {-m2, ..., -1}   (2 m2 values)
  kz in {0, ..., m3 - 1}                      (m3 values; the negative ones are the complex conjugates)
Every kept |k| must lie strictly below the grid's Nyquist frequency n / 2, i.e. n > 2 m on each axis,
for the input grid and the output grid: at n = 2 m the frequency -m would alias with +m.

Layout is channels-last: fields [..., nx, ny, nz, channels], weights [2 m1, 2 m2, m3, c_in, c_out] (real
and imaginary parts apart). The transforms are truncated DFTs done as matrix products
(``fourier_coefficients``, ``fourier_series``): for the few modes an FNO keeps they are faster than FFTs
and give the same numbers.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

# Contractions in full float32: TF32/bf16 passes (the GPU/TPU default) would break grid independence at 1e-3.
_HIGHEST = jax.lax.Precision.HIGHEST


def check_modes(shape: Sequence[int], modes: Sequence[int], what: str = "grid") -> None:
    """Raises ValueError unless every kept frequency lies below the Nyquist frequency of ``shape``.

    Args:
      shape: grid points (nx, ny, nz).
      modes: kept modes per sign (m1, m2, m3).
      what: how to name the grid in the message ("input grid", "out_shape", ...).
    """
    shape, modes = tuple(int(n) for n in shape), tuple(int(m) for m in modes)
    if len(shape) != 3 or len(modes) != 3:
        raise ValueError(f"need 3 grid sizes and 3 mode counts, got shape {shape} and modes {modes}")
    if min(modes) < 1:
        raise ValueError(f"modes must be positive, got {modes}")
    if any(n <= 2 * m for n, m in zip(shape, modes)):
        need = tuple(2 * m + 1 for m in modes)
        raise ValueError(
            f"{what} {shape} is too small for modes {modes}: the kept frequencies -m..m-1 must lie below the "
            f"Nyquist frequency n/2, which needs n > 2*m on each axis (at least {need} points)")


def _signed(m: int) -> np.ndarray:
    """Kept frequencies of a full axis in FFT order: 0..m-1 then -m..-1, [2 m]."""
    return np.r_[0:m, -m:0]


def _phases(n: int, k: np.ndarray) -> np.ndarray:
    """2 pi k x / n for frequencies k and grid points x = 0..n-1, float64 [len(k), n]."""
    return 2.0 * np.pi * np.outer(k, np.arange(n)) / n


def _apply_matrix(matrix: np.ndarray, data: jax.Array, axis: int) -> jax.Array:
    """sum_n matrix[k, n] data[..., n, ...]: ``matrix`` [k, n] acting on axis ``axis`` (negative) of ``data``.

    Written as one batched matrix product over the leading axes with the trailing ones flattened, so XLA
    needs no transpose of ``data`` whatever the axis (an einsum would move the axis last, a full copy).
    """
    axis = data.ndim + axis
    lead, n, rest = data.shape[:axis], data.shape[axis], data.shape[axis + 1:]
    batch, size = int(np.prod(lead)), int(np.prod(rest))
    lhs = jnp.broadcast_to(jnp.asarray(matrix, data.dtype), (batch,) + matrix.shape)  # [batch, k, n]
    out = jax.lax.dot_general(lhs, data.reshape(batch, n, size), (((2,), (1,)), ((0,), (0,))),
                              precision=_HIGHEST)  # [batch, k, size]
    return out.reshape(lead + (matrix.shape[0],) + rest)


def fourier_coefficients(field: jax.Array, modes: Sequence[int]) -> jax.Array:
    """Fourier coefficients c_k of a real periodic field at the kept frequencies (forward normalisation).

    A truncated DFT, one axis at a time (x, y, then z, so the largest array is never transposed), as
    products with [2 m, n] matrices: for the few modes an FNO keeps this is O(n m) work per line at
    matrix-multiply speed, faster than FFTs on a CPU. The numbers are those of
    ``jnp.fft.rfftn(field, norm="forward")`` at the kept frequencies.

    Args:
      field: real values [..., nx, ny, nz, c] on a periodic box.
      modes: (m1, m2, m3), with n > 2 m on each axis.
    Returns:
      complex coefficients [..., 2 m1, 2 m2, m3, c]; x and y in FFT order (0..m-1, then -m..-1), z 0..m3-1.
    """
    m1, m2, m3 = modes
    nx, ny, nz = field.shape[-4:-1]
    phase = _phases(nx, _signed(m1))  # [2 m1, nx]
    parts = _apply_matrix(np.concatenate([np.cos(phase), -np.sin(phase)]) / nx, field, -4)  # [..., 4 m1, ny, nz, c]
    c = jax.lax.complex(parts[..., :2 * m1, :, :, :], parts[..., 2 * m1:, :, :, :])  # [..., 2 m1, ny, nz, c]
    c = _apply_matrix(np.exp(-1j * _phases(ny, _signed(m2))) / ny, c, -3)  # [..., 2 m1, 2 m2, nz, c]
    return _apply_matrix(np.exp(-1j * _phases(nz, np.arange(m3))) / nz, c, -2)  # [..., 2 m1, 2 m2, m3, c]


def fourier_series(coefficients: jax.Array, shape: Sequence[int]) -> jax.Array:
    """The real field Re sum_k c_k exp(2 pi i k.x / L), k over the kept frequencies, on ``shape`` points.

    Inverse of ``fourier_coefficients`` with the missing frequencies zero, on any grid that resolves the
    kept ones. Each kz > 0 stands for itself and its complex conjugate -kz (weight 2, as in irfft); at kz = 0
    only the real part counts (irfft's rule). Same matrix scheme as the forward transform, z, y, then x.

    Args:
      coefficients: complex [..., 2 m1, 2 m2, m3, c] in the layout of ``fourier_coefficients``.
      shape: output grid (nx, ny, nz), with n > 2 m on each axis.
    Returns:
      real values [..., nx, ny, nz, c].
    """
    nx, ny, nz = shape
    m1, m2, m3 = coefficients.shape[-4] // 2, coefficients.shape[-3] // 2, coefficients.shape[-2]
    conjugates = np.where(np.arange(m3) == 0, 1.0, 2.0)  # kz and -kz
    from_z = conjugates * np.exp(1j * _phases(nz, np.arange(m3))).T  # [nz, m3]
    f = _apply_matrix(from_z, coefficients, -2)  # [..., 2 m1, 2 m2, nz, c]
    f = _apply_matrix(np.exp(1j * _phases(ny, _signed(m2))).T, f, -3)  # [..., 2 m1, ny, nz, c]
    phase = _phases(nx, _signed(m1)).T  # [nx, 2 m1]
    parts = jnp.concatenate([f.real, f.imag], axis=-4)  # [..., 4 m1, ny, nz, c]
    return _apply_matrix(np.concatenate([np.cos(phase), -np.sin(phase)], axis=1), parts, -4)  # [..., nx, ny, nz, c]


def spectral_conv(field: jax.Array, weights_real: jax.Array, weights_imag: jax.Array,
                  out_shape: Sequence[int] | None = None) -> jax.Array:
    """Spectral convolution g = F^-1[W_k F[f]_k] of a real periodic field (see the module docstring).

    The result is grid-independent: a band-limited ``field`` sampled on n or on 2 n points per axis gives
    the same function g sampled on n or 2 n points.

    Args:
      field: real values [..., nx, ny, nz, c_in] on a periodic box.
      weights_real, weights_imag: the complex channel mixing W = weights_real + i weights_imag per kept
        frequency, each real [2 m1, 2 m2, m3, c_in, c_out] (layout of ``fourier_coefficients``); the modes
        are read from the shape. Kept apart, so no complex copy of the weights is made at every call.
      out_shape: grid (nx', ny', nz') to evaluate g on; defaults to the input grid. A finer grid is
        spectral zero-padding (band-limited interpolation), a coarser one exact subsampling of g.
    Returns:
      real values [..., nx', ny', nz', c_out] in the dtype of ``field``.
    Raises:
      ValueError: when the input grid or ``out_shape`` does not resolve the kept frequencies.
    """
    shape = weights_real.shape
    if len(shape) != 5 or shape[0] % 2 or shape[1] % 2 or shape[3] != field.shape[-1] or weights_imag.shape != shape:
        raise ValueError(f"weights {shape} and {weights_imag.shape} do not both fit "
                         f"[2 m1, 2 m2, m3, c_in={field.shape[-1]}, c_out]")
    modes = (shape[0] // 2, shape[1] // 2, shape[2])
    in_shape = field.shape[-4:-1]
    out_shape = in_shape if out_shape is None else tuple(int(n) for n in out_shape)
    check_modes(in_shape, modes, "input grid")
    check_modes(out_shape, modes, "out_shape")
    c = fourier_coefficients(field, modes)  # [..., 2 m1, 2 m2, m3, c_in]

    batch, n_modes = c.shape[:-4], int(np.prod(shape[:3]))
    # One [batch, c_in] x [c_in, c_out] product per kept frequency, as a batched matrix product with the
    # frequencies leading, the layout the weights are stored in (so they are read in place, not copied).
    c = jnp.moveaxis(c.reshape(-1, n_modes, shape[3]), 1, 0)  # [n_modes, batch, c_in]

    def mix(part, weights):  # [n_modes, batch, c_in] -> [n_modes, batch, c_out]
        return jax.lax.dot_general(part, weights.reshape(n_modes, shape[3], shape[4]), (((2,), (1,)), ((0,), (0,))),
                                   precision=_HIGHEST)

    mixed = jax.lax.complex(mix(c.real, weights_real) - mix(c.imag, weights_imag),
                            mix(c.real, weights_imag) + mix(c.imag, weights_real))  # [n_modes, batch, c_out]
    mixed = jnp.moveaxis(mixed, 0, 1).reshape(batch + shape[:3] + shape[4:])  # [..., 2 m1, 2 m2, m3, c_out]
    return fourier_series(mixed, out_shape).astype(field.dtype)  # [..., nx', ny', nz', c_out]


def complex_normal_init(key: jax.Array, shape: Sequence[int], dtype=jnp.float32) -> jax.Array:
    """One part (real or imaginary) of complex weights with E|W|^2 = 1 / c_in (``shape[-2]`` is c_in).

    Each part has variance 1 / (2 c_in), so a layer keeps the power of every kept frequency on average.
    """
    return jax.random.normal(key, shape, dtype) * np.sqrt(0.5 / shape[-2]).astype(dtype)


class SpectralConv3D(nn.Module):
    """Flax wrapper of ``spectral_conv`` with learnt complex weights.

    Parameters: ``weights_real`` and ``weights_imag``, float32 [2 m1, 2 m2, m3, c_in, c_out]; their shape
    does not depend on the grid, so one set of weights acts on every resolution.

    Attributes:
      features: output channels c_out.
      modes: kept modes per sign (m1, m2, m3).
    """

    features: int
    modes: tuple[int, int, int]

    @nn.compact
    def __call__(self, field: jax.Array, out_shape: Sequence[int] | None = None) -> jax.Array:
        """Args: field [..., nx, ny, nz, c_in]; out_shape as in ``spectral_conv``.

        Returns [..., nx', ny', nz', features].
        """
        m1, m2, m3 = self.modes
        shape = (2 * m1, 2 * m2, m3, field.shape[-1], self.features)
        real = self.param("weights_real", complex_normal_init, shape)
        imag = self.param("weights_imag", complex_normal_init, shape)
        return spectral_conv(field, real, imag, out_shape)
