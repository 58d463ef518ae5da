"""A local differential kernel for neural operators: a 3x3x3 convolution that converges to first derivatives.

After Liu-Schiaffini et al., "Neural operators with localized integral and differential kernels" (ICML
2024). A plain 3x3x3 convolution acts on a fixed number of voxels, so its meaning changes with the grid
spacing h: it is not a map between functions. A stencil K whose taps sum to zero, scaled by 1/h, is one:

    (D f)(x) = (1/h) sum_j K_j f(x + j h)  ->  sum_j K_j (j . grad f(x))     as h -> 0,

a learned directional derivative per channel pair. So a Fourier layer can add this local path beside its
spectral one (the sharp features a few kept modes cannot carry) and still evaluate on finer grids of the
same box: the stencil then spans fewer Bohr and the 1/h factor keeps its output the same derivative.

Units: h is measured in units of the box edge over ``REFERENCE_POINTS`` (the scale is n / REFERENCE_POINTS
for n points per axis), so the weights keep ordinary sizes. The box is periodic (as the spectral path's):
the stencil wraps around the faces. Layout channels-last, [batch, nx, ny, nz, c].
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

REFERENCE_POINTS = 32  # the stencil's 1/h is n / REFERENCE_POINTS for a box of n points per axis


class DifferentialConv3D(nn.Module):
    """Zero-sum 3x3x3 stencils scaled by 1/h on a periodic box (module docstring), no bias.

    Attributes:
      features: output channels.
    """

    features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """[batch, n, n, n, c_in] -> [batch, n, n, n, features] (a cubic box: one spacing h on all axes)."""
        if len(set(x.shape[1:4])) != 1:
            raise ValueError(f"the differential kernel needs a cubic grid (one spacing), got {x.shape[1:4]}")
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (3, 3, 3, x.shape[-1], self.features))
        kernel = kernel - kernel.mean(axis=(0, 1, 2), keepdims=True)  # taps sum to zero: no 0th-order term
        padded = jnp.pad(x, [(0, 0), (1, 1), (1, 1), (1, 1), (0, 0)], mode="wrap")  # periodic faces
        out = jax.lax.conv_general_dilated(padded, kernel.astype(x.dtype), (1, 1, 1), "VALID",
                                           dimension_numbers=("NDHWC", "DHWIO", "NDHWC"))
        return out * (x.shape[1] / REFERENCE_POINTS)  # 1/h in units of the box edge / REFERENCE_POINTS
