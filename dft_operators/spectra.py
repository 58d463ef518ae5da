"""IR spectra: from the dipole autocorrelation of an MD run (:func:`ir_spectrum`, :func:`ir_peaks`,
:func:`plot_ir`) and harmonic, from the Hessian and dipole derivatives of a potential (:func:`harmonic_ir`).

The potential is a :data:`dft_operators.md.integrators.PotentialFn`. Atomic units inside (Bohr, electron
masses, Hartree, e*Bohr, a.u. time); fs, Kelvin, cm^-1 and km/mol only at the public boundary.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from dft_operators import units
from dft_operators.md.integrators import PotentialFn, _as_pytree


def ir_spectrum(dipoles, frame_dt_fs: float, max_cm1: float = 4000.0, window: str | None = "hann",
                max_lag_fs: float | None = None):
    r"""IR absorption spectrum from the dipole time series of an (equilibrium) MD run.

    I(omega) ∝ ∫ w(t) C(t) e^{-i omega t} dt,  C(t) = <dmu/dt(0) . dmu/dt(t)>,

    which is omega^2 ∫ <mu(0) . mu(t)> e^{-i omega t} dt convolved with the window's transform
    (= omega^2 |FT mu|^2).

    This is the absorption with the harmonic quantum correction already in it: alpha ∝ omega
    tanh(beta hbar omega / 2) FT<{mu(0), mu(t)}> / 2 (Tuckerman, Statistical Mechanics, sec. 14.4), and the
    harmonic approximation FT<{mu(0), mu(t)}> / 2 = (beta hbar omega / 2) coth(beta hbar omega / 2)
    FT<mu(0) mu(t)>_classical leaves beta hbar omega^2 times the classical transform. On a harmonic surface
    each line then carries k_B T (dmu/dQ)^2, so relative heights compare with harmonic IR intensities at any
    temperature (a further factor beta hbar omega / (1 - exp(-beta hbar omega)) would count the correction
    twice and lift the C-H stretches 9x over a 220 cm^-1 torsion at 300 K).

    Steps: dmu/dt by central differences (``np.gradient``; this scales the spectrum by
    sin^2(omega dt) / (omega dt)^2, 0.95 at 4000 cm^-1 for 0.5 fs frames); its mean off; the unbiased
    autocorrelation C(k dt) = sum_n mudot_n . mudot_{n+k} / (N - k), by a zero-padded FFT; the half Hann
    window w_k = (1 + cos(pi k / (N - 1))) / 2 (1 at k = 0, 0 at the last lag, which also suppresses the
    noisy long lags of the unbiased estimate); the even cosine transform
    dt [w_0 C_0 + 2 sum_{k>0} w_k C_k cos(omega k dt)], zero-padded to >= 4N points (a smooth curve;
    resolution stays ~2 / (N dt) with the Hann window). Normalised to a maximum of 1 (all zeros when the
    dipole does not change). Windowing the correlation (not the signal) lets a line's Hann side lobes dip
    below zero, by up to 2.7% of its height.

    An ensemble of independent runs ([n_runs, n_frames, 3], e.g. NVE runs from other initial velocities)
    averages C(t) over the runs: one run at low temperature does not share its energy among the modes in
    10 ps (weak modes can vanish), and the average restores each mode's thermal share.

    Args:
      dipoles: [n_frames, 3] or [n_runs, n_frames, 3] e*Bohr, equally spaced in time.
      frame_dt_fs: time between frames, fs.
      max_cm1: highest wavenumber returned; must be below the Nyquist limit 1 / (2 c dt).
      window: ``"hann"`` or ``None`` (no window).
      max_lag_fs: keep C(t) only up to this lag (the window then spans it): a smoother spectrum of
        resolution ~2 / (c max_lag) (17 cm^-1 for 2000 fs) with less noise from the poorly sampled long
        lags; None keeps the whole run.

    Returns:
      ``(wavenumbers [m] cm^-1 from 0 to max_cm1, intensity [m])``.
    """
    mu = np.asarray(dipoles, np.float64)
    mu = mu[None] if mu.ndim == 2 else mu  # [n_runs, n_frames, 3]
    if mu.ndim != 3 or mu.shape[2] != 3 or mu.shape[1] < 4 or mu.shape[0] < 1:
        raise ValueError(f"dipoles must have shape [n_frames >= 4, 3] or [n_runs, n_frames, 3], got "
                         f"{np.shape(dipoles)}")
    if not (frame_dt_fs > 0 and max_cm1 > 0):
        raise ValueError(f"frame_dt_fs={frame_dt_fs} and max_cm1={max_cm1} must be positive")
    if window not in ("hann", None):
        raise ValueError(f"unknown window {window!r}; expected 'hann' or None")
    dt = frame_dt_fs / units.AU_TIME_FS  # a.u. time
    nyquist_cm1 = np.pi / dt * units.HARTREE_TO_CM1  # omega = pi / dt; hbar omega in Hartree -> cm^-1
    if max_cm1 > nyquist_cm1:
        raise ValueError(f"frames {frame_dt_fs} fs apart resolve only up to {nyquist_cm1:.0f} cm^-1 "
                         f"< max_cm1={max_cm1}; record frames more often")
    n = mu.shape[1]
    mudot = np.gradient(mu, dt, axis=1)
    mudot -= mudot.mean(axis=1, keepdims=True)
    n_fft = 1 << int(np.ceil(np.log2(2 * n)))
    power = np.sum(np.abs(np.fft.rfft(mudot, n=n_fft, axis=1)) ** 2, axis=2).mean(axis=0)  # run average
    corr = np.fft.irfft(power, n=n_fft)[:n] / (n - np.arange(n))  # [n] unbiased C(k dt)
    if max_lag_fs is not None:
        n = min(n, max(4, int(max_lag_fs / frame_dt_fs) + 1))
        corr = corr[:n]
    if window == "hann":
        corr = corr * 0.5 * (1.0 + np.cos(np.pi * np.arange(n) / (n - 1)))
    n_spec = 1 << int(np.ceil(np.log2(4 * n)))
    spectrum = dt * (2.0 * np.fft.rfft(corr, n=n_spec).real - corr[0])
    wavenumbers = 2.0 * np.pi * np.fft.rfftfreq(n_spec, d=dt) * units.HARTREE_TO_CM1
    keep = wavenumbers <= max_cm1
    wavenumbers, spectrum = wavenumbers[keep], spectrum[keep]
    top = spectrum.max()
    return wavenumbers, (spectrum / top if top > 0 else np.zeros_like(spectrum))


@jax.jit
def _second_derivatives(potential: PotentialFn, positions):
    """(d^2E/dR^2 [n, 3, n, 3], dmu/dR [3, n, 3]) of a potential, compiled once per potential and shape."""
    return jax.hessian(lambda r: potential(r)[0])(positions), jax.jacfwd(lambda r: potential(r)[1])(positions)


def harmonic_ir(potential: PotentialFn, positions, masses) -> tuple[np.ndarray, np.ndarray]:
    """Harmonic wavenumbers (cm^-1) and IR intensities (km/mol) of a potential at ``positions`` [n_atoms, 3]
    Bohr, masses [n_atoms] in electron masses.

    The eigenvalues k of the mass-weighted Hessian M^-1/2 (d^2E/dR^2) M^-1/2 (``jax.hessian``) give omega =
    sqrt(k); the six (five if linear) closest to zero - translations and rotations - are dropped, and
    imaginary modes come out negative. The intensity of mode e is A = ``units.IR_INTENSITY_KM_PER_MOL``
    |dmu/dQ|^2 with dmu/dQ = (dmu/dR) M^-1/2 e in e / sqrt(u) (``jax.jacfwd`` of the dipole), as in
    ``reference.vibrations.harmonic_ir``. Returns ([n_modes], [n_modes]), ascending in wavenumber.
    """
    positions, masses = jnp.asarray(positions), jnp.asarray(masses)
    n = positions.shape[0]
    hessian, dipole_jacobian = _second_derivatives(_as_pytree(potential), positions)
    hessian, dipole_jacobian = hessian.reshape(3 * n, 3 * n), np.asarray(dipole_jacobian, np.float64).reshape(3, 3 * n)
    inverse_sqrt = 1.0 / np.sqrt(np.repeat(np.asarray(masses, np.float64), 3))
    weighted = np.asarray(hessian, np.float64) * inverse_sqrt[:, None] * inverse_sqrt[None, :]
    k, modes = np.linalg.eigh(0.5 * (weighted + weighted.T))
    centred = np.asarray(positions, np.float64) - np.asarray(positions, np.float64).mean(0)
    n_rigid = 5 if np.linalg.matrix_rank(centred, tol=1e-6) <= 1 else 6
    keep = np.argsort(np.abs(k))[n_rigid:]
    keep = keep[np.argsort(k[keep])]
    derivatives = dipole_jacobian @ (modes[:, keep] * inverse_sqrt[:, None]) * np.sqrt(units.AMU_TO_ME)
    wavenumbers = np.sign(k[keep]) * np.sqrt(np.abs(k[keep])) * units.HARTREE_TO_CM1
    return wavenumbers, units.IR_INTENSITY_KM_PER_MOL * np.sum(derivatives**2, axis=0)


def ir_peaks(wavenumbers, intensity, min_relative: float = 0.05, min_cm1: float = 400.0) -> list[dict]:
    """Peaks of a spectrum above ``min_cm1`` whose height and prominence are at least ``min_relative``
    of the spectrum's maximum (``scipy.signal.find_peaks``).

    Returns:
      ``[{"cm1": float, "relative_intensity": float}, ...]`` sorted by wavenumber; intensities relative to
      the maximum of ``intensity``.
    """
    from scipy.signal import find_peaks
    wavenumbers, intensity = np.asarray(wavenumbers, float), np.asarray(intensity, float)
    top = intensity.max(initial=0.0)
    if top <= 0:
        return []
    idx, _ = find_peaks(intensity, height=min_relative * top, prominence=min_relative * top)
    return [{"cm1": float(wavenumbers[i]), "relative_intensity": float(intensity[i] / top)}
            for i in idx if wavenumbers[i] >= min_cm1]


def plot_ir(path: str | os.PathLike, wavenumbers, intensity, peaks: list[dict] | None = None,
            reference: list[tuple[float, float]] | None = None) -> None:
    """Saves a PNG of the spectrum (wavenumber axis decreasing, as chemists draw it), with ``peaks``
    (from :func:`ir_peaks`) labelled and ``reference`` sticks ``(cm1, relative intensity)`` (e.g.
    harmonic frequencies) as vertical lines."""
    from matplotlib.figure import Figure  # no pyplot: the Agg canvas, no global state
    fig = Figure(figsize=(8, 4), layout="constrained")
    ax = fig.subplots()
    ax.plot(wavenumbers, intensity, color="C0", lw=1.2, label="MD (dipole autocorrelation)")
    if reference:
        cm1, rel = np.asarray(reference, float).reshape(-1, 2).T
        ax.vlines(cm1, 0.0, rel, color="C3", lw=1.5, label="reference")
    for p in peaks or []:
        ax.annotate(f"{p['cm1']:.0f}", (p["cm1"], p["relative_intensity"]), textcoords="offset points",
                    xytext=(0, 4), ha="center", fontsize=8)
    ax.set(xlabel="wavenumber (cm$^{-1}$)", ylabel="relative intensity", xlim=(max(wavenumbers), 0))
    ax.legend(loc="upper left")
    fig.savefig(path, dpi=120)
