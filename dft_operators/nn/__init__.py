"""Layers shared by the models; this module re-exports the spectral (Fourier) convolution of the FNO."""

from dft_operators.nn.spectral import SpectralConv3D, check_modes, fourier_coefficients, fourier_series, spectral_conv

__all__ = ["SpectralConv3D", "check_modes", "fourier_coefficients", "fourier_series", "spectral_conv"]
