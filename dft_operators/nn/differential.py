"""A local differential kernel for neural operators: a learned linear map of the field's gradient.

After Liu-Schiaffini et al., "Neural operators with localized integral and differential kernels" (ICML
2024). A plain 3x3x3 convolution acts on a fixed number of voxels, so its meaning changes with the grid
spacing h: it is not a map between functions. A stencil K whose taps sum to zero, scaled by 1/h, is one:

    (1/h) sum_j K_j f(x + j h)  ->  sum_j K_j (j . grad f(x)) = sum_d A_d df/dx_d     as h -> 0,

a learned linear map of the gradient. This layer is that limit, built directly: central differences along
each axis (second-order accurate) and one learned matrix from the 3 c_in derivatives to the output channels,

    (D f)(x) = sum_d A_d (f(x + h e_d) - f(x - h e_d)) / (2 h).

So a Fourier layer can add this local path beside its spectral one (the sharp features a few kept modes
cannot carry) and still evaluate on finer grids of the same box: the differences then span fewer Bohr and
the 1/h factor keeps them the same derivative. It costs three shifts and one pointwise matrix product
(a general 27-tap stencil cost seven times the whole FNO layer on a CPU).

Units: h is measured in units of the box edge over ``REFERENCE_POINTS`` (1/h is n / REFERENCE_POINTS for n
points per axis), so the weights keep ordinary sizes. The box is periodic (as the spectral path's): the
differences wrap around the faces. Layout channels-last, [batch, nx, ny, nz, c].
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

REFERENCE_POINTS = 32  # 1/h is n / REFERENCE_POINTS for a box of n points per axis


class DifferentialConv3D(nn.Module):
    """A learned linear map of the central-difference gradient on a periodic box (module docstring), no bias.

    Attributes:
      features: output channels.
    """

    features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """[batch, n, n, n, c_in] -> [batch, n, n, n, features] (a cubic box: one spacing h on all axes)."""
        if len(set(x.shape[1:4])) != 1:
            raise ValueError(f"the differential kernel needs a cubic grid (one spacing), got {x.shape[1:4]}")
        inverse_2h = x.shape[1] / (2 * REFERENCE_POINTS)
        gradient = [(jnp.roll(x, -1, axis) - jnp.roll(x, 1, axis)) * inverse_2h for axis in (1, 2, 3)]
        return nn.Dense(self.features, use_bias=False, name="gradient_map")(jnp.concatenate(gradient, axis=-1))
