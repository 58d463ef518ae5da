"""Kohn-Sham ground states with PySCF, optionally under a random external potential, and the atomic guess.

RKS for closed shells, UKS otherwise; densities are stored as total (alpha + beta) AO density matrices.
"""

from __future__ import annotations

import dataclasses
import time
import warnings

import numpy as np
from pyscf import dft, scf

from dft_operators.molecule import Molecule
from dft_operators.reference.level import Level, SCFError, build_mole, level_electrons
from dft_operators.reference.potentials import RandomPotential, potential_gradient, potential_matrix


@dataclasses.dataclass(frozen=True, eq=False)
class Density:
    """A one-particle density of a molecule, as an AO density matrix.

    Attributes:
      molecule: the molecule.
      level: the level of theory whose basis (and pseudopotential) the matrix refers to.
      dm: total (alpha + beta) density matrix in the AO basis, [nao, nao].
    """

    molecule: Molecule
    level: Level
    dm: np.ndarray

    @property
    def n_electrons(self) -> int:
        """Electrons the matrix describes (the valence count when ``level.pseudo`` is set)."""
        return level_electrons(self.molecule, self.level)


@dataclasses.dataclass(frozen=True, eq=False)
class GroundState:
    """A converged (or not) Kohn-Sham solution.

    Attributes:
      density: the total ground-state density.
      energy: total energy in Hartree, including the random potential's energy tr(D V) if one was applied.
      converged: whether PySCF's SCF met its tolerance.
      cycles: SCF iterations PySCF performed.
      seconds: wall time of the calculation.
      mo_energy: orbital energies in Hartree, [nmo] (RKS) or [2, nmo] (UKS).
      mo_occ: occupations, same shape as ``mo_energy``.
      homo: highest occupied orbital energy in Hartree (the chemical potential mu).
      dipole: dipole moment [3] in atomic units (e Bohr) about the origin, electrons plus nuclei (ion
        cores with a pseudopotential).
      forces: -dE/dR in Hartree/Bohr, [n_atoms, 3], if asked for (the random potential is held fixed in
        space); else None.
      external: the random potential applied, or None.
      mo_coeff: orbital coefficients, [nao, nmo] (RKS) or [2, nao, nmo] (UKS).
    """

    density: Density
    energy: float
    converged: bool
    cycles: int
    seconds: float
    mo_energy: np.ndarray
    mo_occ: np.ndarray
    homo: float
    dipole: np.ndarray
    forces: np.ndarray | None
    external: RandomPotential | None
    mo_coeff: np.ndarray | None = None

    @property
    def spin_dms(self) -> np.ndarray:
        """Alpha and beta density matrices [2, nao, nao] (halves of the total for RKS)."""
        if np.ndim(self.mo_occ) == 1:
            return np.stack([self.density.dm / 2, self.density.dm / 2])
        return np.einsum("smi,si,sni->smn", self.mo_coeff, self.mo_occ, self.mo_coeff)


def _initial_dm(dm0: np.ndarray, nao: int, unrestricted: bool, name: str) -> np.ndarray:
    """A starting density in the form the SCF wants: [nao, nao] total for RKS, [2, nao, nao] for UKS."""
    dm0 = np.asarray(dm0, dtype=np.float64)
    if dm0.shape not in ((nao, nao), (2, nao, nao)):
        raise SCFError(f"{name}: initial density matrix has shape {dm0.shape}, expected ({nao}, {nao}) "
                       f"or (2, {nao}, {nao})")
    if unrestricted and dm0.ndim == 2:
        return np.stack([dm0 / 2, dm0 / 2])
    if not unrestricted and dm0.ndim == 3:
        return dm0.sum(axis=0)
    return dm0


def run_ks(molecule: Molecule, level: Level = Level(), external: RandomPotential | None = None,
           dm0: np.ndarray | None = None, forces: bool = False, conv_tol: float = 1e-9,
           max_cycle: int = 100) -> GroundState:
    """Kohn-Sham ground state with PySCF (RKS when ``molecule.spin`` is 0, else UKS).

    Reproducible: the same inputs give the same result to rounding (bitwise on one OpenMP thread).

    The random potential enters the core Hamiltonian exactly, h = T + V_nuc (or the pseudopotential) + V
    with V_mn = <m|v|n> from three-centre overlap integrals.

    Args:
      molecule: the molecule.
      level: functional, basis and pseudopotential.
      external: an optional random potential added to the external potential.
      dm0: optional starting density matrix, [nao, nao] total or [2, nao, nao] alpha/beta; default
        PySCF's default guess ('minao').
      forces: also compute -dE/dR (Hartree/Bohr).
      conv_tol: energy convergence tolerance in Hartree.
      max_cycle: most SCF iterations.
    Raises:
      SCFError: the calculation cannot be set up or PySCF fails (missing basis, bad starting density).
    """
    start = time.perf_counter()
    mol = build_mole(molecule, level)
    unrestricted = molecule.spin != 0
    mf = (dft.UKS if unrestricted else dft.RKS)(mol, xc=level.xc)
    mf.conv_tol, mf.max_cycle, mf.verbose = conv_tol, max_cycle, 0
    if external is not None:
        hcore = mf.get_hcore() + potential_matrix(external, mol)
        mf.get_hcore = lambda *args, **kwargs: hcore
    if dm0 is not None:
        dm0 = _initial_dm(dm0, mol.nao, unrestricted, molecule.name)
    try:
        energy = mf.kernel(dm0=dm0)
        dm = np.asarray(mf.make_rdm1())
        dm_total = dm.sum(axis=0) if unrestricted else dm
        dipole = np.asarray(mf.dip_moment(unit="AU", verbose=0))
        gradient = None
        if forces:
            grad = mf.nuc_grad_method()
            grad.verbose = 0
            gradient = grad.kernel()
            if external is not None:
                gradient = gradient + potential_gradient(external, mol, dm_total)
    except (RuntimeError, ValueError, np.linalg.LinAlgError) as err:
        raise SCFError(f"{molecule.name}: PySCF Kohn-Sham ({level.xc}/{level.basis}) failed: {err}") from err
    mo_occ, mo_energy = np.asarray(mf.mo_occ), np.asarray(mf.mo_energy)
    return GroundState(
        density=Density(molecule, level, dm_total),
        energy=float(energy),
        converged=bool(mf.converged),
        cycles=int(mf.cycles),
        seconds=time.perf_counter() - start,
        mo_energy=mo_energy,
        mo_occ=mo_occ,
        homo=float(mo_energy[mo_occ > 0].max()),
        dipole=dipole,
        forces=None if gradient is None else -np.asarray(gradient),
        external=external,
        mo_coeff=np.asarray(mf.mo_coeff),
    )


def atomic_guess(molecule: Molecule, level: Level = Level()) -> Density:
    """Superposition of neutral spherical atomic densities (PySCF's 'atom' guess; 'minao' if that fails).

    The atomic densities come from spin- and occupation-averaged atomic HF in the level's basis
    (and pseudopotential). For an ion the sum is scaled uniformly to the molecule's electron count, so
    the guess always integrates to ``level_electrons(molecule, level)``.

    Returns:
      the guess density; its ``dm`` is [nao, nao].
    """
    mol = build_mole(molecule, level)
    try:
        with warnings.catch_warnings():  # PySCF's atomic HF calls its own deprecated remove_linear_dep_
            warnings.simplefilter("ignore", DeprecationWarning)
            dm = scf.hf.init_guess_by_atom(mol)
    except (RuntimeError, ValueError, KeyError, np.linalg.LinAlgError):
        dm = scf.hf.init_guess_by_minao(mol)
    dm = np.array(dm, dtype=np.float64)
    count = np.einsum("mn,nm->", dm, mol.intor_symmetric("int1e_ovlp"))
    return Density(molecule, level, dm * (level_electrons(molecule, level) / count))
