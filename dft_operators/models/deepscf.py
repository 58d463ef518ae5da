"""DeepSCF: a residual 3D U-Net from the atomic guess and atomic fingerprints to the SCF density correction.

After Lee and Kim, "Convolutional network learning of self-consistent electron density via grid-projected
atomic fingerprints" (npj Comput. Mater. 10, 2024). Input fields on a box, channels-last
``[batch, nx, ny, nz, c_in]`` (rho0 and the channels of ``data.fingerprints``), become the residual density
delta rho = rho_SCF - rho0, ``[batch, nx, ny, nz]``; the grid workflow adds rho0, clips at zero and scales
to the electron count. With grid spacing h, patch size p and L levels:

    embed:   p x p x p patches of voxels -> one voxel of spacing p h (space-to-depth), 1x1x1 conv to w channels
    down:    level l (spacing p 2^l h, 2^l w channels): residual blocks, then a 2x2x2 stride-2 convolution
    bottom:  residual blocks at level L
    up:      a 2x2x2 stride-2 transposed convolution, concatenation with level l's skip, residual blocks
    output:  1x1x1 conv to p^3 values per patch, rearranged onto the input grid (depth-to-space), times a
             fixed scale s; it starts at zero, so an untrained network predicts delta rho = 0, i.e. rho0, and
             s (about the size of delta rho) keeps Adam's first, sign-like steps from swamping rho0
    block:   y = P x + conv3(silu(conv3(silu(x)))), P the identity or a 1x1x1 projection

No layer has a bias and silu(0) = 0, so zero inputs give zero features: the network's response to a molecule
vanishes beyond a receptive field of its input fields, and it is exactly translation-equivariant for shifts
by multiples of p 2^L voxels as long as that response stays inside the box (the faces zero-pad the features,
which then changes nothing). Boxes are zero-padded to such a multiple and cropped back, so the same weights
predict on any box of the training spacing, larger ones (bigger molecules) included; where the response of
a molecule reaches the faces of its training box, a larger box changes the prediction a little
(``experiments/deepscf_predict_big.py`` measures how much).

Receptive field (``receptive_field``, the width of the input region one output voxel can see): 88 voxels
for the default config, 35 Bohr at the 0.4 Bohr spacing of the shipped data (a radius of 17.6 Bohr, six
C-C bond lengths); 36 voxels for ``tiny``. The two coarsest levels (3.2 and 1.6 Bohr at h = 0.4) carry
charge transfer between groups several bonds apart; the fine levels shape the bonds.
"""

from __future__ import annotations

import dataclasses

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from dft_operators.models import check_channels


@dataclasses.dataclass(frozen=True)
class DeepSCFConfig:
    """Hyperparameters of the DeepSCF U-Net (saved beside its weights)."""

    width: int = 16  # channels after the patch embedding, doubled at each coarser level
    levels: int = 2  # stride-2 down-samplings below the patch grid (L)
    blocks: int = 1  # residual blocks per level on each side of the U
    patch: int = 2  # voxels per axis merged into one patch (p); the U-Net runs on a grid p times coarser
    out_scale: float = 0.03  # s: delta rho in electrons/Bohr^3 per unit of the last layer's output
    in_channels: int = 16  # input fields (rho0 plus 15 fingerprint channels); the api sets it from the task

    @staticmethod
    def tiny() -> "DeepSCFConfig":
        """Seconds on a CPU, for smoke tests."""
        return DeepSCFConfig(width=4, levels=1, blocks=1, patch=2)


def receptive_field(config: DeepSCFConfig) -> int:
    """Width in voxels of the input region that one output voxel depends on (an upper bound, per axis).

    A k-wide convolution whose input has stride j (in input voxels) widens it by (k - 1) j; 1x1x1 layers and
    the 2x2x2 transposed convolutions (each fine voxel reads one coarse voxel) add nothing. Path through the
    bottom: embed (k = p, j = 1); per level l < L, with j = p 2^l: 2 * blocks 3-wide convs down and again up,
    and the 2-wide down-sampling; 2 * blocks 3-wide convs at the bottom (j = p 2^L).
    """
    p, b = config.patch, config.blocks
    width = 1 + (p - 1)
    for level in range(config.levels):
        j = p * 2**level
        width += 2 * b * 2 * j + (2 - 1) * j + 2 * b * 2 * j
    return width + 2 * b * 2 * (p * 2**config.levels)


def space_to_depth(x: jax.Array, p: int) -> jax.Array:
    """[b, nx, ny, nz, c] -> [b, nx/p, ny/p, nz/p, p^3 c]: each p x p x p patch becomes one voxel's channels."""
    b, nx, ny, nz, c = x.shape
    x = x.reshape(b, nx // p, p, ny // p, p, nz // p, p, c)
    return x.transpose(0, 1, 3, 5, 2, 4, 6, 7).reshape(b, nx // p, ny // p, nz // p, p**3 * c)


def depth_to_space(x: jax.Array, p: int) -> jax.Array:
    """The inverse of ``space_to_depth``: [b, mx, my, mz, p^3 c] -> [b, p mx, p my, p mz, c]."""
    b, mx, my, mz, pc = x.shape
    c = pc // p**3
    x = x.reshape(b, mx, my, mz, p, p, p, c).transpose(0, 1, 4, 2, 5, 3, 6, 7)
    return x.reshape(b, mx * p, my * p, mz * p, c)


def pad_to_multiple(x: jax.Array, multiple: int) -> jax.Array:
    """Zero-pads the grid axes of [b, nx, ny, nz, c] at their high ends to multiples of ``multiple``."""
    pads = [(0, -n % multiple) for n in x.shape[1:4]]
    return jnp.pad(x, [(0, 0), *pads, (0, 0)])


class ResidualBlock(nn.Module):
    """y = P x + conv3(silu(conv3(silu(x)))) with ``features`` output channels, no biases."""

    features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv = lambda name: nn.Conv(self.features, (3, 3, 3), use_bias=False, name=name)  # noqa: E731
        h = conv("conv_1")(nn.silu(x))
        h = conv("conv_2")(nn.silu(h))
        skip = x if x.shape[-1] == self.features else nn.Conv(self.features, (1, 1, 1), use_bias=False,
                                                               name="projection")(x)
        return skip + h


class DeepSCF(nn.Module):
    """DeepSCF U-Net (see the module docstring); build it with ``create_deepscf``.

    Attributes:
      width: channels after the patch embedding (doubled per level).
      levels: stride-2 down-samplings below the patch grid.
      blocks: residual blocks per level and side.
      patch: voxels per axis per patch.
      out_scale: electrons/Bohr^3 per unit of the last layer's output.
      in_channels: input fields the weights were made for (checked on every call).
    """

    width: int
    levels: int
    blocks: int
    patch: int
    out_scale: float
    in_channels: int
    # A CNN: translation-equivariant on any box, at its training spacing only; its output is delta rho.
    resolution_invariant = False
    signed_output = True

    @nn.compact
    def __call__(self, fields: jax.Array) -> jax.Array:
        """Residual density on the box of the inputs.

        Args:
          fields: standardised input fields [batch, nx, ny, nz, c_in] on a box (any shape; zero far away).
        Returns:
          delta rho [batch, nx, ny, nz] in electrons / Bohr^3.
        """
        chex.assert_rank(fields, 5)
        check_channels(fields, self.in_channels)
        shape = fields.shape[1:4]
        x = pad_to_multiple(fields, self.patch * 2**self.levels)  # [b, Nx, Ny, Nz, c_in]
        h = nn.Conv(self.width, (1, 1, 1), use_bias=False, name="embed")(space_to_depth(x, self.patch))
        skips = []
        for level in range(self.levels):
            for i in range(self.blocks):
                h = ResidualBlock(self.width * 2**level, name=f"down_{level}_{i}")(h)
            skips.append(h)
            h = nn.Conv(self.width * 2 ** (level + 1), (2, 2, 2), strides=2, padding="VALID", use_bias=False,
                        name=f"downsample_{level}")(nn.silu(h))  # [b, n/2, n/2, n/2, 2 c]
        for i in range(self.blocks):
            h = ResidualBlock(self.width * 2**self.levels, name=f"bottom_{i}")(h)
        for level in reversed(range(self.levels)):
            h = nn.ConvTranspose(self.width * 2**level, (2, 2, 2), strides=(2, 2, 2), padding="VALID",
                                 use_bias=False, name=f"upsample_{level}")(nn.silu(h))  # [b, 2n, 2n, 2n, c / 2]
            h = jnp.concatenate([h, skips[level]], axis=-1)
            for i in range(self.blocks):
                h = ResidualBlock(self.width * 2**level, name=f"up_{level}_{i}")(h)
        out = nn.Conv(self.patch**3, (1, 1, 1), use_bias=False, kernel_init=nn.initializers.zeros,
                      name="output")(nn.silu(h))  # [b, Nx/p, Ny/p, Nz/p, p^3]
        delta = self.out_scale * depth_to_space(out, self.patch)[..., 0]  # [b, Nx, Ny, Nz]
        return delta[:, :shape[0], :shape[1], :shape[2]]  # [b, nx, ny, nz]


def create_deepscf(config: DeepSCFConfig) -> DeepSCF:
    """The DeepSCF module for a config (the only place that reads ``DeepSCFConfig``)."""
    return DeepSCF(width=config.width, levels=config.levels, blocks=config.blocks, patch=config.patch,
                   out_scale=config.out_scale, in_channels=config.in_channels)
