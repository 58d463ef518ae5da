"""Layers shared by the models (so far the spectral convolution of the FNO)."""

from dft_operators.nn.spectral import SpectralConv3D, check_modes, padded_irfftn, spectral_conv, truncated_rfftn

__all__ = ["SpectralConv3D", "check_modes", "padded_irfftn", "spectral_conv", "truncated_rfftn"]
