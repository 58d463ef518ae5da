"""Geometry optimisation and harmonic IR spectra at a Kohn-Sham level of theory, with PySCF.

``optimize_geometry`` minimises the Kohn-Sham energy with SciPy's BFGS on analytic forces, each SCF
starting from the previous density matrix. ``harmonic_ir`` diagonalises PySCF's analytic mass-weighted
Hessian for the normal modes and takes IR intensities from central differences of the SCF dipole
along each mode. Atomic units inside (Bohr, Hartree); masses in unified atomic mass units (u), the unit
PySCF's harmonic analysis uses; wavenumbers in cm^-1 and intensities in km/mol at the output.
"""

from __future__ import annotations

import numpy as np
from pyscf import dft
from pyscf.hessian import thermo
from scipy import optimize

from dft_operators import units
from dft_operators.molecule import Molecule
from dft_operators.reference.level import ALL_ELECTRON, Level, SCFError, build_mole
from dft_operators.reference.scf import GroundState, run_ks

# SCF energy tolerances in Hartree: the optimiser's line searches and the Hessian's SCF (1e-10), the
# finite-difference dipoles (1e-12, i.e. PySCF's orbital-gradient tolerance 1e-6, which keeps the
# dipole noise well below h |dmu/dx| for weak bands).
_TIGHT = 1e-10
_DIPOLE_TOL = 1e-12


def _free_gradient(state: GroundState) -> np.ndarray:
    """dE/dR [n_atoms, 3] in Hartree/Bohr with the net force removed.

    PySCF's DFT forces omit the response of the quadrature grid to the nuclei, so they do not sum to zero
    exactly; the residue would push the molecule bodily and never vanish. Subtracting the mean force
    projects the rigid translation out of the gradient, so the optimiser never translates the molecule.
    """
    gradient = -state.forces
    return gradient - gradient.mean(axis=0)


class _EnergySurface:
    """E(R) and dE/dR of flat positions [3 n_atoms] (Bohr), each SCF started from the last density."""

    def __init__(self, molecule: Molecule, level: Level):
        self.molecule, self.level = molecule, level
        self.dm = None
        self.evaluations, self.cycles = 0, 0
        self.last: tuple[np.ndarray, GroundState] | None = None

    def state(self, x: np.ndarray) -> GroundState:
        if self.last is not None and np.array_equal(self.last[0], x):
            return self.last[1]
        molecule = self.molecule.with_positions(x.reshape(-1, 3))
        state = run_ks(molecule, self.level, dm0=self.dm, forces=True, conv_tol=_TIGHT)
        if not state.converged:  # a long line-search step can strand the old density: start afresh
            state = run_ks(molecule, self.level, forces=True, conv_tol=_TIGHT, max_cycle=300)
        if not state.converged:
            raise SCFError(f"{self.molecule.name}: SCF did not converge during the geometry optimisation "
                           f"(evaluation {self.evaluations + 1}, {self.level.xc}/{self.level.basis})")
        self.evaluations += 1
        self.cycles += state.cycles
        self.dm = state.density.dm
        self.last = (np.array(x, copy=True), state)
        return state

    def __call__(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        state = self.state(x)
        return state.energy, _free_gradient(state).ravel()


def optimize_geometry(molecule: Molecule, level: Level = ALL_ELECTRON, gtol: float = 3e-5,
                      max_steps: int = 200, progress: bool = False) -> tuple[Molecule, GroundState]:
    """Kohn-Sham equilibrium geometry: BFGS on E(R) with PySCF's analytic forces.

    SciPy's BFGS (identity initial inverse Hessian in Bohr^2/Hartree, Wolfe line search) minimises the
    energy over all 3 n_atoms Cartesians; rigid translation is projected out of the gradient (see
    ``_free_gradient``) and rotation needs no treatment, the gradient of a rotation-invariant energy
    having no rotational component. Each SCF starts from the previous density matrix. When BFGS stops
    early on precision loss (line-search noise near the minimum) it is restarted from its last point with
    a fresh Hessian, until the step budget is spent.

    Args:
      molecule: the starting geometry (Bohr).
      level: the level of theory.
      gtol: convergence threshold on the largest component of the translation-free gradient, max |dE/dR|,
        in Hartree/Bohr.
      max_steps: most BFGS iterations (each one SCF with forces, plus line-search extras).
      progress: print one line per iteration (energy and max force).
    Returns:
      the optimised molecule (positions in Bohr) and its ground state (energy in Hartree, raw PySCF
      forces in Hartree/Bohr).
    Raises:
      SCFError: an SCF failed to converge, or the gradient is still above ``gtol`` after ``max_steps``.
    """
    surface = _EnergySurface(molecule, level)
    x = np.asarray(molecule.positions, dtype=np.float64).ravel()
    steps = 0

    def report(intermediate_result):
        if progress:
            energy, gradient = surface(intermediate_result.x)
            print(f"  opt step {steps + report.count + 1:3d}  E = {energy:.10f} Ha  "
                  f"max|F| = {np.abs(gradient).max():.2e} Ha/Bohr", flush=True)
        report.count += 1

    while True:
        report.count = 0
        result = optimize.minimize(surface, x, jac=True, method="BFGS", callback=report,
                                   options={"gtol": gtol, "norm": np.inf, "maxiter": max_steps - steps})
        steps += max(result.nit, report.count)
        x = result.x
        energy, gradient = surface(x)
        max_force = float(np.abs(gradient).max())
        if max_force < gtol:
            break
        if steps >= max_steps or result.nit == 0:
            raise SCFError(
                f"{molecule.name}: geometry optimisation did not converge in {steps} steps "
                f"(max force {max_force:.2e} Hartree/Bohr, gtol {gtol:.1e}; scipy: {result.message})")
    state = surface.state(x)
    if progress:
        print(f"  converged in {steps} steps, {surface.evaluations} SCFs ({surface.cycles} cycles): "
              f"E = {energy:.10f} Ha, max|F| = {max_force:.2e} Ha/Bohr", flush=True)
    return state.density.molecule, state


def _converged_scf(molecule: Molecule, level: Level, conv_tol: float):
    """A PySCF RKS (closed shell) or UKS object converged to ``conv_tol`` Hartree, as ``run_ks`` builds it."""
    mf = (dft.UKS if molecule.spin != 0 else dft.RKS)(build_mole(molecule, level), xc=level.xc)
    mf.conv_tol, mf.conv_tol_grad, mf.max_cycle, mf.verbose = conv_tol, np.sqrt(conv_tol) / 10, 200, 0
    try:
        mf.kernel()
    except (RuntimeError, ValueError, np.linalg.LinAlgError) as err:
        raise SCFError(f"{molecule.name}: PySCF Kohn-Sham ({level.xc}/{level.basis}) failed: {err}") from err
    if not mf.converged:
        raise SCFError(f"{molecule.name}: SCF for the Hessian did not converge ({level.xc}/{level.basis})")
    return mf


def harmonic_ir(molecule: Molecule, level: Level = ALL_ELECTRON, dipole_step: float = 0.005) -> dict:
    """Harmonic vibrational frequencies and IR intensities (double-harmonic approximation).

    Call it at an optimised geometry (``optimize_geometry``); elsewhere the modes are still those of the
    projected Hessian but the frequencies are not those of a minimum.

    Frequencies: PySCF's analytic Kohn-Sham Hessian H [Hartree/Bohr^2] (SCF converged to 1e-10 Ha),
    mass-weighted with masses m in u, translations and rotations projected out
    (``pyscf.hessian.thermo.harmonic_analysis``); the eigenvalues lambda of M^-1/2 H M^-1/2 give
    omega = sqrt(lambda) and nu~ = omega / (2 pi c) in cm^-1. An eigenvector L_k (mass-weighted, unit)
    gives the Cartesian displacement per unit normal coordinate, x_k = M^-1/2 L_k [Bohr / (sqrt(u) Bohr)],
    and the reduced mass mu_k = 1 / |x_k|^2 [u].

    Intensities: with e_k = x_k / |x_k| the unit Cartesian mode, a displacement s [Bohr] along e_k is
    Q_k = sqrt(mu_k) s of the mass-weighted normal coordinate, so
    dmu/dQ_k = (mu(R + h e_k) - mu(R - h e_k)) / (2 h sqrt(mu_k)) [e Bohr / (sqrt(u) Bohr) = e / sqrt(u)],
    two SCF dipoles per mode (converged to 1e-12 Ha, started from the equilibrium density; origin-independent
    as the modes keep the centre of mass fixed). Here mu_k is PySCF's (Gaussian's) reduced mass, 1.008 u
    for H2's stretch, not the bond's 0.504 u: Q_k = sqrt(mu_k) s with s the length of the whole
    displacement vector, not the bond-length change. The integrated absorption coefficient of a fundamental,
    A_k = N_A pi / (3 c^2) |dmu/dQ_k|^2 (Gaussian units) = N_A / (12 epsilon_0 c^2) |dmu/dQ_k|^2 (SI),
    is for |dmu/dQ| = 1 e / sqrt(u): N_A e^2 / (12 epsilon_0 c^2 u) = 974.88 km/mol
    (``units.IR_INTENSITY_KM_PER_MOL``), hence A_k [km/mol] = 974.88 |dmu/dQ_k [e / sqrt(u)]|^2.

    Args:
      molecule: the molecule (Bohr), normally at its equilibrium geometry.
      level: the level of theory (RKS for closed shells, UKS otherwise, as ``run_ks``).
      dipole_step: finite-difference step h along each unit Cartesian mode, in Bohr.
    Returns:
      a dict (n_modes = 3 n_atoms - 6, or - 5 for linear molecules; modes in ascending frequency):
        "frequencies_cm1": [n_modes] harmonic wavenumbers in cm^-1; an imaginary one (a saddle point) is
          given as a negative number.
        "intensities_km_mol": [n_modes] IR intensities in km/mol.
        "modes": [n_modes, n_atoms, 3] unit-norm Cartesian displacement vectors e_k (sign: largest
          component positive).
        "reduced_masses_amu": [n_modes] mu_k in u.
        "dipole_derivatives": [n_modes, 3] dmu/dQ_k in e / sqrt(u).
        "n_imaginary": number of imaginary frequencies.
        "energy": the SCF energy in Hartree.
        "hessian": [n_atoms, 3, n_atoms, 3] Cartesian Hessian in Hartree/Bohr^2.
    Raises:
      SCFError: an SCF did not converge.
    """
    mf = _converged_scf(molecule, level, _TIGHT)
    hessian = np.asarray(mf.Hessian().kernel())  # [n_atoms, n_atoms, 3, 3], Hartree/Bohr^2
    masses_amu = molecule.masses / units.AMU_TO_ME
    analysis = thermo.harmonic_analysis(mf.mol, hessian, imaginary_freq=False, mass=masses_amu)
    frequencies = np.asarray(analysis["freq_wavenumber"], dtype=np.float64)  # [n_modes], cm^-1
    reduced = np.asarray(analysis["reduced_mass"], dtype=np.float64)  # [n_modes], u
    modes = np.asarray(analysis["norm_mode"]) * np.sqrt(reduced)[:, None, None]  # [n_modes, n_atoms, 3]
    flat = modes.reshape(len(modes), -1)
    signs = np.sign(flat[np.arange(len(flat)), np.abs(flat).argmax(axis=1)])
    modes = modes * signs[:, None, None]

    dm = np.asarray(mf.make_rdm1())
    dm0 = dm.sum(axis=0) if dm.ndim == 3 else dm
    derivatives = np.zeros((len(modes), 3))
    for k, mode in enumerate(modes):
        dipoles = []
        for sign in (1.0, -1.0):
            state = run_ks(molecule.with_positions(molecule.positions + sign * dipole_step * mode), level,
                           dm0=dm0, conv_tol=_DIPOLE_TOL)
            if not state.converged:
                raise SCFError(f"{molecule.name}: SCF at the displaced geometry of mode {k} did not converge")
            dipoles.append(state.dipole)
        derivatives[k] = (dipoles[0] - dipoles[1]) / (2 * dipole_step * np.sqrt(reduced[k]))  # e / sqrt(u)
    intensities = units.IR_INTENSITY_KM_PER_MOL * np.sum(derivatives ** 2, axis=1)  # [n_modes], km/mol
    return {
        "frequencies_cm1": frequencies,
        "intensities_km_mol": intensities,
        "modes": modes,
        "reduced_masses_amu": reduced,
        "dipole_derivatives": derivatives,
        "n_imaginary": int(analysis["freq_error"]),
        "energy": float(mf.e_tot),
        "hessian": hessian.transpose(0, 2, 1, 3),
    }
