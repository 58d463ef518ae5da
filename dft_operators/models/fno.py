"""V2Rho-FNO: a Fourier neural operator from the screened ionic potential to the valence density.

The map is potential -> density on a periodic box (``grids.UniformGrid``), both channels-last:

    lift:     h_0(x)     = A [f(x), r(x)]                         (pointwise; r = 3 box coordinates)
    layer t:  h_{t+1}(x) = gelu(K_t h_t (x) + W_t h_t(x) [+ D_t h_t(x)])   (no gelu after the last layer)
    project:  rho(x)     = softplus(Q_2 gelu(Q_1 h_L(x)))          (non-negative; head "density")
              drho(x)    = s Q_2 gelu(Q_1 h_L(x))                  (signed; head "delta", s = DELTA_SCALE)

with K_t the spectral convolution of ``nn.spectral`` and W_t, A, Q pointwise (1x1) Dense layers, the
W_t h_t term being the layer's residual (skip) path. With ``local`` each layer adds D_t, a learned
differential kernel (``nn.differential``: a learned linear map of the central-difference gradient, the
limit of zero-sum stencils scaled by 1/h), for the sharp features that the kept modes cannot carry; it keeps
resolution transfer. No weight has a grid-sized shape, so one set of
weights evaluates on every resolution of the same box. ``normalise`` then scales rho to the electron
count, which absorbs the arbitrary units of the network output. The "delta" head is for Delta-learning
on top of the atomic-density guess (the workflow adds rho0 and normalises): the pure potential-to-density
map of the paper is the "density" head.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from dft_operators.grids import spectral_resample
from dft_operators.models import check_channels
from dft_operators.nn.differential import DifferentialConv3D
from dft_operators.nn.spectral import SpectralConv3D, check_modes


HEADS = ("density", "delta")
# Output scale of the "delta" head (electrons/Bohr^3): about the size of rho - rho0 in valence densities.
DELTA_SCALE = 0.03


@dataclasses.dataclass(frozen=True)
class FNOConfig:
    """Hyperparameters of the V2Rho-FNO (saved beside its weights)."""

    width: int = 32  # channels in the Fourier layers
    modes: int = 8  # Fourier modes kept per axis (per sign); the grid needs more than 2 * modes points per axis
    n_layers: int = 4  # Fourier layers
    lifting_width: int = 64  # hidden width of the projection MLP
    in_channels: int = 1  # input fields (the screened ionic potential; 2 when the atomic-density guess is added)
    head: str = "density"  # "density": non-negative rho; "delta": signed rho - rho0 (a residual task)
    local: bool = False  # add a differential-kernel path to each Fourier layer (the paper's FNO: False)

    def __post_init__(self):
        if self.head not in HEADS:
            raise ValueError(f"unknown FNO head {self.head!r}; choose from {HEADS}")

    @staticmethod
    def tiny() -> "FNOConfig":
        """Seconds on a CPU, for smoke tests; needs grids of at least 7 points per axis."""
        return FNOConfig(width=8, modes=3, n_layers=2, lifting_width=16)


def gelu(x: jax.Array) -> jax.Array:
    """Exact GELU, x Phi(x) = x (1 + erf(x / sqrt 2)) / 2, as PyTorch computes it.

    Same function as ``flax.linen.gelu(x, approximate=False)``, which XLA builds from erfc and which made
    up about a third of the FNO's forward time on a CPU.
    """
    return 0.5 * x * (1.0 + jax.lax.erf(x * np.float32(1.0 / np.sqrt(2.0))))


def box_coordinates(shape: Sequence[int]) -> np.ndarray:
    """Normalised coordinates of a periodic box's grid points, float32 [nx, ny, nz, 3], each in [-1, 1).

    Point i of n along an axis sits at -1 + 2 i / n: the same box sampled on n or on 2 n points gives the
    same values at the shared points, so the coordinate channels do not depend on the resolution. NumPy,
    so that under jit they are a compile-time constant.
    """
    axes = [-1.0 + 2.0 * np.arange(n) / n for n in shape]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).astype(np.float32)  # [nx, ny, nz, 3]


def resample_fields(fields: jax.Array, shape: Sequence[int]) -> jax.Array:
    """Band-limited (Fourier) resampling of channels-last fields [..., nx, ny, nz, c] to ``shape``.

    Returns [..., mx, my, mz, c] in the dtype of ``fields`` (``grids.spectral_resample`` per channel).
    """
    channels_first = jnp.moveaxis(fields, -1, -4)  # [..., c, nx, ny, nz]
    resampled = spectral_resample(channels_first, tuple(shape))  # [..., c, mx, my, mz]
    return jnp.moveaxis(resampled, -4, -1).astype(fields.dtype)  # [..., mx, my, mz, c]


class FNO(nn.Module):
    """V2Rho-FNO (see the module docstring); build it with ``create_fno``.

    Attributes:
      width: channels of the Fourier layers.
      modes: kept Fourier modes per axis and sign (the same on x, y, z).
      n_layers: Fourier layers.
      lifting_width: hidden width of the projection MLP.
      head: "density" (non-negative output) or "delta" (signed, scaled by ``DELTA_SCALE``).
      in_channels: input fields the weights were made for (checked on every call).
      local: whether each Fourier layer has a differential-kernel path.
    """

    width: int
    modes: int
    n_layers: int
    lifting_width: int
    head: str = "density"
    in_channels: int = 1
    local: bool = False
    # The spectral weights are tied to the training box's Fourier modes: any resolution, but that box only.
    resolution_invariant = True

    @property
    def signed_output(self) -> bool:
        """Whether the output is delta rho (a residual task), not a non-negative density."""
        return self.head == "delta"

    @nn.compact
    def __call__(self, fields: jax.Array, out_shape: Sequence[int] | None = None) -> jax.Array:
        """Density on the box in arbitrary units (scale it with ``normalise``), or rho - rho0 (head "delta").

        Args:
          fields: input fields [batch, nx, ny, nz, c_in] on a periodic box (the screened ionic potential in
            Hartree, optionally with the atomic-density guess in electrons / Bohr^3).
          out_shape: a grid (mx, my, mz) of the same box to predict on. Resolution transfer resamples the
            inputs spectrally (band-limited interpolation) to ``out_shape`` and runs the whole network
            there, so the result is the same as calling the model on inputs sampled on the finer grid.
        Returns:
          [batch, mx, my, mz] (``out_shape``, or the input grid when None): a non-negative density, or
          delta rho in electrons/Bohr^3 for the "delta" head.
        Raises:
          ValueError: when the grid has no more than 2 * modes points along some axis.
        """
        chex.assert_rank(fields, 5)
        check_channels(fields, self.in_channels)
        if out_shape is not None and tuple(out_shape) != fields.shape[1:4]:
            fields = resample_fields(fields, out_shape)  # [batch, mx, my, mz, c_in]
        shape = fields.shape[1:4]
        modes = (self.modes,) * 3
        check_modes(shape, modes, "grid")
        coordinates = jnp.broadcast_to(box_coordinates(shape), fields.shape[:4] + (3,))  # [batch, nx, ny, nz, 3]
        h = nn.Dense(self.width, name="lifting")(jnp.concatenate([fields, coordinates], axis=-1))
        for t in range(self.n_layers):
            paths = [SpectralConv3D(self.width, modes, name=f"spectral_{t}")(h), nn.Dense(self.width, name=f"skip_{t}")(h)]
            if self.local:
                paths.append(DifferentialConv3D(self.width, name=f"local_{t}")(h))
            h = sum(paths)
            if t < self.n_layers - 1:
                h = gelu(h)
        h = gelu(nn.Dense(self.lifting_width, name="projection_hidden")(h))
        if self.head == "density":
            return nn.softplus(nn.Dense(1, name="projection_out")(h)[..., 0])  # [batch, nx, ny, nz]
        # zero-initialised: an untrained delta head predicts rho0 itself, not rho0 plus noise on the whole box
        zeros = nn.initializers.zeros
        return DELTA_SCALE * nn.Dense(1, kernel_init=zeros, bias_init=zeros, name="projection_out")(h)[..., 0]


def create_fno(config: FNOConfig) -> FNO:
    """The FNO module for a config (the only place that reads ``FNOConfig``)."""
    return FNO(width=config.width, modes=config.modes, n_layers=config.n_layers, lifting_width=config.lifting_width,
               head=config.head, in_channels=config.in_channels, local=config.local)


def normalise(density: jax.Array, n_electrons: jax.Array, voxel_volume) -> jax.Array:
    """Scales each density so that its Riemann sum is the electron count: sum(rho) * dV = N.

    Args:
      density: non-negative values [batch, nx, ny, nz] with a positive sum.
      n_electrons: electrons per sample [batch] (the valence count for pseudopotential densities).
      voxel_volume: dV in Bohr^3, a float or [batch].
    Returns:
      density [batch, nx, ny, nz] in electrons / Bohr^3.
    """
    chex.assert_rank(density, 4)
    n_electrons = jnp.asarray(n_electrons, density.dtype)
    voxel_volume = jnp.broadcast_to(jnp.asarray(voxel_volume, density.dtype), n_electrons.shape)
    scale = n_electrons / (density.sum(axis=(1, 2, 3)) * voxel_volume)  # [batch]
    return density * scale[:, None, None, None]
