"""External potentials: the seeded random Gaussian potential and the (screened) ionic potential.

The random potential perturbs a molecule's Kohn-Sham Hamiltonian (the V2Rho map learns its response);
the screened ionic potential is the smooth field that describes the nuclei (or ion cores) on a box.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from pyscf import df, gto
from scipy.special import erf

from dft_operators.grids import UniformGrid
from dft_operators.molecule import Molecule
from dft_operators.reference.level import Level, gth_parameters, ion_charge

# Gaussian width (Bohr) that smears all-electron nuclei on a box: -Z erf(r / (sqrt2 * width)) / r.
NUCLEAR_SMEARING = 0.2
# Values held at once when a potential is evaluated block by block (bounds the memory of temporaries).
_BLOCK_VALUES = 2**22
# Below this distance (Bohr) erf(a r) / r is replaced by its Taylor series 2a/sqrt(pi) (1 - (a r)^2 / 3).
_SMALL_R = 1e-6


@dataclasses.dataclass(frozen=True, eq=False)
class RandomPotential:
    """A sum of Gaussians added to the external potential.

    v(r) = sum_k a_k exp(-|r - c_k|^2 / (2 s_k^2)), in Hartree.

    Attributes:
      centers: c_k in Bohr, [k, 3].
      amplitudes: a_k in Hartree, [k].
      widths: s_k in Bohr, [k].
    """

    centers: np.ndarray
    amplitudes: np.ndarray
    widths: np.ndarray

    def __post_init__(self):
        centers = np.asarray(self.centers, dtype=np.float64).reshape(-1, 3)
        amplitudes = np.asarray(self.amplitudes, dtype=np.float64).reshape(-1)
        widths = np.asarray(self.widths, dtype=np.float64).reshape(-1)
        if not len(centers) == len(amplitudes) == len(widths) or np.any(widths <= 0):
            raise ValueError(f"random potential needs [k,3] centres, [k] amplitudes and [k] positive widths, got "
                             f"{centers.shape}, {amplitudes.shape}, {widths.shape}")
        object.__setattr__(self, "centers", centers)
        object.__setattr__(self, "amplitudes", amplitudes)
        object.__setattr__(self, "widths", widths)

    @staticmethod
    def sample(molecule: Molecule, seed: int, n_gaussians: int = 8, amplitude: float = 0.2,
               width=(0.8, 2.0)) -> "RandomPotential":
        """A reproducible random potential around a molecule.

        Each centre is a randomly chosen atom's position plus normal noise of 1 Bohr per axis.

        Args:
          molecule: the molecule the Gaussians are placed around.
          seed: seed of NumPy's default generator; the same seed gives the same potential.
          n_gaussians: number of Gaussians k.
          amplitude: amplitudes are uniform in [-amplitude, amplitude] Hartree.
          width: widths are uniform in [width[0], width[1]] Bohr.
        """
        rng = np.random.default_rng(seed)
        atoms = rng.integers(molecule.n_atoms, size=n_gaussians)
        centers = molecule.positions[atoms] + rng.normal(scale=1.0, size=(n_gaussians, 3))
        amplitudes = rng.uniform(-amplitude, amplitude, size=n_gaussians)
        widths = rng.uniform(width[0], width[1], size=n_gaussians)
        return RandomPotential(centers, amplitudes, widths)

    def values(self, points) -> np.ndarray:
        """v at points [..., 3] (Bohr) -> [...] Hartree."""
        points = np.asarray(points, dtype=np.float64)
        out = np.zeros(points.shape[:-1])
        for c, a, s in zip(self.centers, self.amplitudes, self.widths):
            out += a * np.exp(-np.sum((points - c) ** 2, axis=-1) / (2 * s**2))
        return out

    def as_arrays(self) -> dict[str, np.ndarray]:
        """The parameters as arrays: centers [k, 3] Bohr, amplitudes [k] Hartree, widths [k] Bohr."""
        return {"centers": self.centers.copy(), "amplitudes": self.amplitudes.copy(), "widths": self.widths.copy()}


def _gaussian_charges(potential: RandomPotential) -> tuple[gto.Mole, np.ndarray]:
    """PySCF s functions at the centres and the weights that turn them into the potential's Gaussians.

    ``fakemol_for_charges`` makes unit-charge Gaussians (alpha/pi)^(3/2) exp(-alpha r^2), alpha = 1/(2 s^2),
    so a_k exp(-alpha r^2) is that function times a_k (pi/alpha)^(3/2).
    """
    alpha = 1.0 / (2.0 * potential.widths**2)
    return gto.fakemol_for_charges(potential.centers, expnt=alpha), potential.amplitudes * (np.pi / alpha) ** 1.5


def potential_matrix(potential: RandomPotential, mol: gto.Mole) -> np.ndarray:
    """V_mn = <m|v|n> exactly, by three-centre overlaps with the Gaussians (Hartree, [nao, nao])."""
    fakemol, weights = _gaussian_charges(potential)
    return df.incore.aux_e2(mol, fakemol, intor="int3c1e", aosym="s1") @ weights


def potential_gradient(potential: RandomPotential, mol: gto.Mole, dm: np.ndarray) -> np.ndarray:
    """d/dR_A of sum_mn D_mn V_mn with the potential held fixed in space (Hartree/Bohr, [n_atoms, 3]).

    Only basis functions move with the atoms: dV_mn/dR_A = -<d_r m|v|n> - <m|v|d_r n> for m, n on A.
    Args:
      dm: the total density matrix [nao, nao] (symmetric).
    """
    fakemol, weights = _gaussian_charges(potential)
    ip = df.incore.aux_e2(mol, fakemol, intor="int3c1e_ip1", aosym="s1", comp=3) @ weights  # [3, nao, nao]
    per_ao = -2.0 * np.einsum("xmn,mn->mx", ip, dm)  # [nao, 3]
    grad = np.zeros((mol.natm, 3))
    for atom, (_, _, p0, p1) in enumerate(mol.aoslice_by_atom()):
        grad[atom] = per_ao[p0:p1].sum(axis=0)
    return grad


def _erf_over_r(r: np.ndarray, a: float) -> np.ndarray:
    """erf(a r) / r, finite at r = 0 (its limit there is 2a/sqrt(pi))."""
    small = r < _SMALL_R
    safe = np.where(small, 1.0, r)
    return np.where(small, 2 * a / np.sqrt(np.pi) * (1 - (a * r) ** 2 / 3), erf(a * safe) / safe)


def _atom_potential(r: np.ndarray, symbol: str, pseudo: str | None, smearing: float | None) -> np.ndarray:
    """One atom's potential (Hartree) at distances r (Bohr): its local GTH part, or its (smeared) nucleus."""
    if pseudo is None:
        z = ion_charge(symbol, None)
        if smearing is None:
            return -z / r
        return -z * _erf_over_r(r, 1.0 / (np.sqrt(2) * smearing))
    params = gth_parameters(pseudo, symbol)
    z_ion, r_loc, coefficients = sum(params[0]), params[1], params[3]
    x2 = (r / r_loc) ** 2
    polynomial = sum(c * x2**i for i, c in enumerate(coefficients))
    return -z_ion * _erf_over_r(r, 1.0 / (np.sqrt(2) * r_loc)) + np.exp(-0.5 * x2) * polynomial


def ionic_potential(molecule: Molecule, level: Level, points, smearing: float | None = None) -> np.ndarray:
    """Sum over atoms of the local ionic potential at points [..., 3] (Bohr) -> [...] Hartree.

    With ``level.pseudo``: the local GTH part of each atom,
      V_loc(r) = -Z_ion/r erf(r / (sqrt2 r_loc)) + exp(-(r/r_loc)^2 / 2) sum_i C_i (r/r_loc)^(2i - 2).
    All-electron: -Z/r, or -Z erf(r / (sqrt2 smearing)) / r when ``smearing`` (Bohr) is given.
    """
    points = np.asarray(points, dtype=np.float64)
    out = np.zeros(points.shape[:-1])
    for symbol, position in zip(molecule.symbols, molecule.positions):
        r = np.linalg.norm(points - position, axis=-1)
        out += _atom_potential(r, symbol, level.pseudo, smearing)
    return out


def screened_ionic_potential(molecule: Molecule, level: Level, grid: UniformGrid) -> np.ndarray:
    """The ionic potential on a box, finite everywhere (the input field of grid models).

    With ``level.pseudo`` set, the sum over atoms of the local GTH pseudopotential (parameters from
    PySCF's tables), V_loc(r) = -Z_ion/r erf(r / (sqrt2 r_loc)) + exp(-(r/r_loc)^2/2) (C1 + C2 (r/r_loc)^2
    + C3 (r/r_loc)^4 + C4 (r/r_loc)^6), whose value at r = 0 is -Z_ion sqrt(2/pi) / r_loc + C1. All-electron
    (``level.pseudo`` None): the nuclear potential smeared by a Gaussian of width 0.2 Bohr,
    -Z erf(r / (sqrt2 * 0.2)) / r. Both tend to -Z_ion/r far from an atom.

    Args:
      molecule: the molecule.
      level: the level of theory (only ``pseudo`` matters).
      grid: the box.
    Returns:
      the potential in Hartree, [nx, ny, nz].
    """
    xs, ys, zs = grid.axes()
    out = np.empty(grid.shape)
    step = max(1, _BLOCK_VALUES // (len(ys) * len(zs)))
    for i in range(0, len(xs), step):
        slab = np.stack(np.meshgrid(xs[i:i + step], ys, zs, indexing="ij"), axis=-1)  # [bx, ny, nz, 3]
        out[i:i + step] = ionic_potential(molecule, level, slab, smearing=NUCLEAR_SMEARING)
    return out
