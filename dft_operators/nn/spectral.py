"""3D spectral convolution (the Fourier layer of an FNO) for real fields on periodic boxes.

A field f on a periodic box of n = (nx, ny, nz) points is read as the trigonometric polynomial whose
Fourier coefficients are its forward-normalised DFT,

    c_k = (1 / (nx ny nz)) sum_x f(x) exp(-2 pi i k.x / n),

which are the same numbers for every grid on which a band-limited f is sampled above its Nyquist rate.
The layer keeps the kept frequencies, multiplies each by its own complex channel-mixing matrix W_k and
sums the series back on any grid that resolves them:

    g(x) = sum_{k kept} (c_k W_k) exp(2 pi i k.x / L)      (real part; g is real by construction).

So the layer is a map between functions, not between arrays: the same weights act on any grid, and an
output grid finer than the input is spectral zero-padding (exact evaluation of g at the finer points).

Kept frequencies (the four corner blocks of an rfftn spectrum, modes = (m1, m2, m3)):
  kx in {0, ..., m1 - 1} and {-m1, ..., -1}   (2 m1 values, ordered as the FFT orders them)
  ky in {0, ..., m2 - 1} and {-m2, ..., -1}   (2 m2 values)
  kz in {0, ..., m3 - 1}                      (m3 values; the negative ones are the complex conjugates)
Every kept |k| must lie strictly below the grid's Nyquist frequency n / 2, i.e. n > 2 m on each axis,
for the input grid and the output grid: at n = 2 m the frequency -m would alias with +m.

Layout is channels-last: fields [..., nx, ny, nz, channels], weights [2 m1, 2 m2, m3, c_in, c_out].
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

# Spatial axes of a channels-last field [..., nx, ny, nz, c].
_X, _Y, _Z = -4, -3, -2


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


def _keep(spectrum: jax.Array, m: int, axis: int) -> jax.Array:
    """The 2 m lowest frequencies of a full FFT axis: 0..m-1 then -m..-1 (FFT order)."""
    n = spectrum.shape[axis]
    low = jax.lax.slice_in_dim(spectrum, 0, m, axis=axis)
    high = jax.lax.slice_in_dim(spectrum, n - m, n, axis=axis)
    return jnp.concatenate([low, high], axis=axis)  # [..., 2m, ...]


def _pad(block: jax.Array, n: int, axis: int) -> jax.Array:
    """Inverse of ``_keep``: puts the 2 m kept frequencies of one axis into a zero spectrum of n points."""
    m = block.shape[axis] // 2
    low = jax.lax.slice_in_dim(block, 0, m, axis=axis)
    high = jax.lax.slice_in_dim(block, m, 2 * m, axis=axis)
    zeros_shape = list(block.shape)
    zeros_shape[axis] = n - 2 * m
    return jnp.concatenate([low, jnp.zeros(zeros_shape, block.dtype), high], axis=axis)  # [..., n, ...]


def truncated_rfftn(field: jax.Array, modes: Sequence[int]) -> jax.Array:
    """Fourier coefficients c_k of a real periodic field at the kept frequencies (forward normalisation).

    The transform is pruned: z first (rfft), then y and x only over the kept slabs, so it costs less than
    a full rfftn followed by slicing and gives the same numbers.

    Args:
      field: real values [..., nx, ny, nz, c] on a periodic box.
      modes: (m1, m2, m3), with n > 2 m on each axis.
    Returns:
      complex coefficients [..., 2 m1, 2 m2, m3, c], x and y in FFT order (non-negative first).
    """
    m1, m2, m3 = modes
    spectrum = jnp.fft.rfft(field, axis=_Z, norm="forward")[..., :m3, :]  # [..., nx, ny, m3, c]
    spectrum = _keep(jnp.fft.fft(spectrum, axis=_Y, norm="forward"), m2, _Y)  # [..., nx, 2 m2, m3, c]
    return _keep(jnp.fft.fft(spectrum, axis=_X, norm="forward"), m1, _X)  # [..., 2 m1, 2 m2, m3, c]


def padded_irfftn(coefficients: jax.Array, shape: Sequence[int]) -> jax.Array:
    """The real field sum_k c_k exp(2 pi i k.x / L) sampled on a grid of ``shape`` points.

    Inverse of ``truncated_rfftn`` with the missing frequencies set to zero, on any grid that resolves the
    kept ones. The imaginary part left in the kz = 0 plane is dropped by the final irfft (numpy's
    documented rule), which is the same as adding the complex-conjugate frequencies -k: the result is the
    real part of the series, on every grid alike.

    Args:
      coefficients: complex [..., 2 m1, 2 m2, m3, c] in the layout of ``truncated_rfftn``.
      shape: output grid (nx, ny, nz), with n > 2 m on each axis.
    Returns:
      real values [..., nx, ny, nz, c].
    """
    nx, ny, nz = shape
    field = jnp.fft.ifft(_pad(coefficients, nx, _X), axis=_X, norm="forward")  # [..., nx, 2 m2, m3, c]
    field = jnp.fft.ifft(_pad(field, ny, _Y), axis=_Y, norm="forward")  # [..., nx, ny, m3, c]
    m3 = field.shape[_Z]
    pad = [(0, 0)] * field.ndim
    pad[field.ndim + _Z] = (0, nz // 2 + 1 - m3)
    field = jnp.pad(field, pad)  # [..., nx, ny, nz // 2 + 1, c]
    return jnp.fft.irfft(field, n=nz, axis=_Z, norm="forward")  # [..., nx, ny, nz, c]


def spectral_conv(field: jax.Array, weights: jax.Array, out_shape: Sequence[int] | None = None) -> jax.Array:
    """Spectral convolution g = F^-1[W_k F[f]_k] of a real periodic field (see the module docstring).

    The result is grid-independent: a band-limited ``field`` sampled on n or on 2 n points per axis gives
    the same function g sampled on n or 2 n points.

    Args:
      field: real values [..., nx, ny, nz, c_in] on a periodic box.
      weights: complex channel mixing [2 m1, 2 m2, m3, c_in, c_out] per kept frequency (layout of
        ``truncated_rfftn``); the modes are read from its shape.
      out_shape: grid (nx', ny', nz') to evaluate g on; defaults to the input grid. A finer grid is
        spectral zero-padding (band-limited interpolation), a coarser one exact subsampling of g.
    Returns:
      real values [..., nx', ny', nz', c_out] in the dtype of ``field``.
    Raises:
      ValueError: when the input grid or ``out_shape`` does not resolve the kept frequencies.
    """
    if weights.ndim != 5 or weights.shape[0] % 2 or weights.shape[1] % 2 or weights.shape[3] != field.shape[-1]:
        raise ValueError(f"weights {weights.shape} do not fit [2 m1, 2 m2, m3, c_in={field.shape[-1]}, c_out]")
    modes = (weights.shape[0] // 2, weights.shape[1] // 2, weights.shape[2])
    in_shape = field.shape[-4:-1]
    out_shape = in_shape if out_shape is None else tuple(int(n) for n in out_shape)
    check_modes(in_shape, modes, "input grid")
    check_modes(out_shape, modes, "out_shape")
    coefficients = truncated_rfftn(field, modes)  # [..., 2 m1, 2 m2, m3, c_in]
    mixed = jnp.einsum("...xyzi,xyzio->...xyzo", coefficients, weights)  # [..., 2 m1, 2 m2, m3, c_out]
    return padded_irfftn(mixed, out_shape).astype(field.dtype)  # [..., nx', ny', nz', c_out]


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
        return spectral_conv(field, jax.lax.complex(real, imag), out_shape)
