"""Starting densities for PySCF's SCF: its standard guesses, and a density given on a box (a model's output).

A density on a box becomes a density matrix by one Kohn-Sham step in the field of that density. It is
written rho = rho_atoms + delta, with rho_atoms the superposition of spherical atomic densities (PySCF's
atomic guess, from radial tables: ``atomic_fields``) known at any point, and delta = rho - rho_atoms known on
the box only:

  1. the Hartree potential v_H = v_atoms + v_delta: v_atoms from the radial tables (no four-centre
     integrals), v_delta(r) = int delta(r') / |r - r'| dr' solved on the box by Hockney's free-space method
     (FFT convolution on a box twice as large, so periodic images never meet) with the Coulomb kernel of a
     band-limited density (``free_space_hartree``);
  2. rho on PySCF's molecular quadrature grid: rho_atoms from the tables plus the cubic-spline interpolation
     of delta (zero outside the box), clipped at 0; for a GGA grad rho likewise, the gradient of delta by
     central differences;
  3. V_mn = int (v_H + v_xc[rho]) phi_m phi_n in one pass over the quadrature, with PySCF's screening of
     negligible basis functions (GGAs add the grad rho terms);
  4. F = h + V, with h the kinetic energy plus the (pseudo)potential of the nuclei; solve F C = S C eps and
     occupy the lowest orbitals (aufbau).

On one core this costs 0.4 s for acetone (under half an SCF cycle) and 2.7 s for caffeine (an eighth of
one cycle's J and v_xc), where PySCF's exact J of rho_atoms alone took 8 s.

The sharp parts of a density near the nuclei, which a box of models' spacing (0.4 Bohr) under-samples, are
mostly in rho_atoms, so delta is smoother than rho: interpolating rho itself instead costs water and acetone
one to two more SCF cycles. Given the exact SCF density on a box, the SCF from this guess takes 7 (acetone)
and 8 (urea) cycles at 0.4 Bohr, 5 and 5 at 0.3 and 0.2, against minao's 10 and 10
(``experiments/deepscf_box_ceiling.py``). At 0.4 Bohr the error of this Fock matrix (its occupied-virtual
block in the converged orbitals, acetone) is 3.1e-3 Ha (6.0e-3 with a point-charge Coulomb kernel), mostly
the Hartree part of a delta that the box under-samples near the nuclei (3.5e-3; v_xc 1.2e-3); at 0.3 Bohr
6e-4. A model's density with 3.4 % NMAE gives 2.7e-2: the model's error, not the conversion, limits the
cycles saved. For hybrids
the exact-exchange part of F is left out (the guess is rougher, the converged result is the same). Meant for
valence densities (GTH pseudopotentials); all-electron cusps need a much finer box than models use.
"""

from __future__ import annotations

import functools

import numpy as np
import scipy.ndimage
from pyscf import dft

from dft_operators.grids import UniformGrid
from dft_operators.molecule import Molecule
from dft_operators.reference.atomic_fields import AtomicFields
from dft_operators.reference.level import Level, SCFError, build_mole

STANDARD_GUESSES = ("minao", "atom", "huckel")
_NEAR = 4  # voxels: the reach of the band-limited correction to the Coulomb kernel
_NEAR_OFFSETS = np.r_[0:_NEAR + 1, -_NEAR:0]  # those offsets as FFT indices (negative ones from the end)


def _scf_object(molecule: Molecule, level: Level):
    """An unrun PySCF KS object of the molecule (RKS for spin 0, else UKS), silent."""
    mf = (dft.UKS if molecule.spin else dft.RKS)(build_mole(molecule, level), xc=level.xc)
    mf.verbose = 0
    return mf


def standard_guess(molecule: Molecule, level: Level, method: str) -> np.ndarray:
    """PySCF's own initial guess: 'minao' (its default), 'atom' (superposed atomic HF) or 'huckel'.

    Returns:
      the density matrix PySCF would start from: [nao, nao] (RKS) or [2, nao, nao] (UKS).
    """
    if method not in STANDARD_GUESSES:
        raise ValueError(f"unknown guess {method!r}; PySCF's guesses here are {', '.join(STANDARD_GUESSES)}")
    return np.asarray(_scf_object(molecule, level).get_init_guess(key=method))


@functools.lru_cache(maxsize=1)
def _band_limited_near_field() -> np.ndarray:
    """The potential of a band-limited unit charge (the sinc interpolant of one voxel of unit spacing) at the
    voxel centres within ``_NEAR`` voxels of it, [2 _NEAR + 1]^3 indexed by offset modulo the size.

    Vico, Greengard and Ferrando's free-space method (J. Comput. Phys. 323, 191 (2016)): the Coulomb kernel
    truncated at a distance D beyond the box has the smooth transform 4 pi (1 - cos(k D)) / k^2, sampled here on
    a 4x oversampled grid of a small box. Farther away the kernel is 1/r to 1 %, and that ringing cancels.
    """
    n, oversampled = 16, 64
    ks = [2 * np.pi * np.fft.fftfreq(oversampled)] * 3
    k = np.sqrt(sum(a**2 for a in np.meshgrid(*ks, indexing="ij", sparse=True)))
    reach = np.sqrt(3.0) * n * 1.01
    with np.errstate(divide="ignore", invalid="ignore"):
        transform = np.where(k > 0, 4 * np.pi * (1 - np.cos(k * reach)) / k**2, 2 * np.pi * reach**2)
    kernel = np.fft.ifftn(transform).real
    return kernel[np.ix_(_NEAR_OFFSETS, _NEAR_OFFSETS, _NEAR_OFFSETS)]


def free_space_hartree(density: np.ndarray, spacing: float) -> np.ndarray:
    """v(r) = int rho(r') / |r - r'| dr' on a box for an isolated charge distribution.

    Hockney's method (the box zero-padded to twice its size and convolved by FFT with the kernel at minimum-image
    offsets, so periodic images never meet), with the kernel of a band-limited density: 1/r between distant
    voxels, and near the diagonal (within ``_NEAR`` voxels) the potential of a sinc-interpolated voxel
    (``_band_limited_near_field``) instead of a point charge. On acetone's SCF density at 0.4 Bohr this halves the
    error of the Hartree matrix (orbital gradient 3.5e-3 against 6.4e-3 with point charges).

    Args:
      density: charge density [nx, ny, nz] (electrons/Bohr^3).
      spacing: voxel edge h in Bohr.
    Returns:
      the potential [nx, ny, nz] in Hartree per unit charge (positive for positive density).
    """
    shape = np.asarray(density.shape)
    padded = 2 * shape
    offsets = [np.minimum(np.arange(m), m - np.arange(m)) for m in padded]  # minimum-image offsets (voxels)
    r = np.sqrt(sum(a**2 for a in np.meshgrid(*offsets, indexing="ij", sparse=True)))  # [2nx, 2ny, 2nz]
    kernel = 1.0 / np.where(r > 0, r, 1.0)
    kernel[np.ix_(_NEAR_OFFSETS, _NEAR_OFFSETS, _NEAR_OFFSETS)] = _band_limited_near_field()
    kernel *= spacing**2  # 1/(r h) per voxel of volume h^3
    transform = lambda f: np.fft.rfftn(f, s=padded, axes=(0, 1, 2))  # noqa: E731
    potential = np.fft.irfftn(transform(density) * transform(kernel), s=padded, axes=(0, 1, 2))
    return potential[:shape[0], :shape[1], :shape[2]]


class _BoxField:
    """Cubic-spline values of a box field [nx, ny, nz] at points (Bohr), zero outside the box; the spline
    coefficients are computed once (``map_coordinates`` would filter the whole box again for each block)."""

    def __init__(self, field: np.ndarray, grid: UniformGrid):
        self.coefficients = scipy.ndimage.spline_filter(field, order=3, mode="constant")
        self.origin, self.spacing = np.asarray(grid.origin), grid.spacing

    def __call__(self, points: np.ndarray) -> np.ndarray:
        index = ((points - self.origin) / self.spacing).T  # [3, n] fractional voxel indices
        return scipy.ndimage.map_coordinates(self.coefficients, index, order=3, mode="constant", cval=0.0,
                                             prefilter=False)


def _potential_matrix(mf, grids, atoms: AtomicFields, grid: UniformGrid, delta: np.ndarray,
                      v_delta: np.ndarray) -> dict:
    """The one-electron potential matrix of the box density rho = rho_atoms + delta, by quadrature on PySCF's
    ``grids``, in its blocks with its screening of negligible basis functions (as ``numint.nr_rks`` does).

    Returns {"v": int (v_atoms + v_delta + v_xc[rho]) phi_m phi_n (+ GGA: de/d(grad rho) . grad(phi_m phi_n)),
    [nao, nao]; "exc": E_xc[rho]; "rho_vxc": int rho v_xc (+ GGA: int de/d(grad rho) . grad rho);
    "hartree": int rho_atoms (v_atoms + 2 v_delta), the quadrature's part of int rho v_H[rho] (Hartree)}.
    """
    mol, ni, xc = mf.mol, mf._numint, mf.xc
    xctype = dft.libxc.xc_type(xc)
    gga = xctype == "GGA"
    delta_at, v_delta_at = _BoxField(delta, grid), _BoxField(v_delta, grid)
    delta_gradient = [_BoxField(g, grid) for g in np.gradient(delta, grid.spacing)] if gga else []
    ao_loc = mol.ao_loc_nr()
    pair_mask = mol.get_overlap_cond() < -np.log(ni.cutoff)
    nbins = dft.numint.NBINS * 2 - int(dft.numint.NBINS * np.log(grids.cutoff * 1e2) / np.log(grids.cutoff))
    matrix = np.zeros((mol.nao, mol.nao))
    exc = rho_vxc = hartree = 0.0
    for ao, mask, w, block in ni.block_loop(mol, grids, mol.nao, deriv=int(gga)):
        atomic = atoms.at(block, ("rho", "v", "grad") if gga else ("rho", "v"))
        rho = (atomic["rho"] + delta_at(block))[None]  # [1, b]
        if gga:
            rho = np.concatenate([rho, atomic["grad"].T + np.stack([g(block) for g in delta_gradient])])  # [4, b]
        rho[0] = np.maximum(rho[0], 0.0)
        v = np.zeros_like(rho)
        if xctype != "HF":
            e, vxc = ni.eval_xc_eff(xc, rho if gga else rho[0], deriv=1, xctype=xctype)[:2]
            v += vxc.reshape(v.shape)
            exc += float(np.sum(w * rho[0] * e))
            rho_vxc += float(np.sum(w * (v * rho).sum(0)))
        v_delta_here = v_delta_at(block)
        hartree += float(np.sum(w * atomic["rho"] * (atomic["v"] + 2 * v_delta_here)))
        v[0] += atomic["v"] + v_delta_here
        if gga:  # PySCF's GGA path: half the local part, then M + M^T
            v[0] *= 0.5
            aow = dft.numint._scale_ao_sparse(ao, w * v, mask, ao_loc)
            dft.numint._dot_ao_ao_sparse(ao[0], aow, None, nbins, mask, pair_mask, ao_loc, hermi=0, out=matrix)
        else:
            dft.numint._dot_ao_ao_sparse(ao, ao, w * v[0], nbins, mask, pair_mask, ao_loc, hermi=1, out=matrix)
    if gga:
        matrix = matrix + matrix.T
    return {"v": matrix, "exc": exc, "rho_vxc": rho_vxc, "hartree": hartree}


def _box_fock(molecule: Molecule, level: Level, grid: UniformGrid, density: np.ndarray, grid_level: int):
    """(PySCF KS object, Fock matrix of the box density, its parts) for ``guess_from_box`` and ``harris_from_box``."""
    density = np.asarray(density, dtype=np.float64)
    if density.shape != grid.shape:
        raise SCFError(f"{molecule.name}: density of shape {density.shape} on a box of shape {grid.shape}")
    if dft.libxc.xc_type(level.xc) not in ("LDA", "GGA", "HF"):
        raise SCFError(f"{molecule.name}: a guess from a density needs an LDA or GGA functional, {level.xc!r} "
                       f"is {dft.libxc.xc_type(level.xc)}")
    mf = _scf_object(molecule, level)
    grids = dft.gen_grid.Grids(mf.mol)
    grids.level = grid_level
    grids.build(with_non0tab=True)
    atoms = AtomicFields(molecule, level)
    delta = density - atoms.density(grid.points().reshape(-1, 3)).reshape(grid.shape)  # [nx, ny, nz]
    v_delta = free_space_hartree(delta, grid.spacing)
    parts = _potential_matrix(mf, grids, atoms, grid, delta, v_delta)
    parts["hartree"] += float(np.sum(delta * v_delta)) * grid.voxel_volume  # + int delta v_delta, on the box
    return mf, mf.get_hcore() + parts["v"], parts


def _diagonalise(mf, molecule: Molecule, fock: np.ndarray):
    """(orbital energies, occupations, density matrix) of one Kohn-Sham step with ``fock`` (aufbau)."""
    if molecule.spin:
        fock = np.stack([fock, fock])
    mo_energy, mo_coeff = mf.eig(fock, mf.get_ovlp())
    occupation = mf.get_occ(mo_energy, mo_coeff)
    return np.asarray(mo_energy), np.asarray(occupation), np.asarray(mf.make_rdm1(mo_coeff, occupation))


def guess_from_box(molecule: Molecule, level: Level, grid: UniformGrid, density: np.ndarray,
                   grid_level: int = 3) -> np.ndarray:
    """A starting density matrix from a density on a box, by one Kohn-Sham step (module docstring).

    Args:
      molecule: the molecule.
      level: the level of theory of the SCF (the density is its valence density when ``level.pseudo`` is set).
      grid: the box (Bohr); density: rho on it, [nx, ny, nz] electrons/Bohr^3.
      grid_level: PySCF quadrature grid level of the exchange-correlation and delta-potential integrals.
    Returns:
      [nao, nao] total density matrix (RKS) or [2, nao, nao] alpha and beta (UKS, both from the same
      spin-unpolarised Fock matrix, occupied with the molecule's spin).
    Raises:
      SCFError: the functional is not LDA or GGA, or the density does not have the box's shape.
    """
    mf, fock, _ = _box_fock(molecule, level, grid, density, grid_level)
    return _diagonalise(mf, molecule, fock)[2]


def harris_from_box(molecule: Molecule, level: Level, grid: UniformGrid, density: np.ndarray,
                    grid_level: int = 3) -> dict:
    """Energies of a density on a box without an SCF: the Harris-Foulkes functional and one Kohn-Sham step.

    With eps_i the orbital energies of the Fock matrix F[rho_in] of the box density (module docstring) and
    f_i their occupations,

      E_Harris[rho_in] = sum_i f_i eps_i - 1/2 int rho_in v_H[rho_in] - int rho_in v_xc[rho_in] + E_xc[rho_in] + E_nn,

    stationary at the self-consistent density, so its error is second order in the density's. The Hartree
    double counting splits as rho_in = rho_atoms + delta: int rho_atoms (v_atoms + 2 v_delta) on the
    quadrature (the potential the Fock matrix holds) + int delta v_delta on the box.

    Returns:
      {"energy_harris": Hartree, "energy_one_step": the Kohn-Sham energy of the density matrix after one
       diagonalisation (Hartree), "dipole": its dipole moment [3] (a.u.), "dm": that density matrix}.
    """
    mf, fock, parts = _box_fock(molecule, level, grid, density, grid_level)
    mo_energy, occupation, dm = _diagonalise(mf, molecule, fock)
    harris = float(np.sum(occupation * mo_energy) - 0.5 * parts["hartree"] - parts["rho_vxc"] + parts["exc"]
                   + mf.energy_nuc())
    return {"energy_harris": harris, "energy_one_step": float(mf.energy_tot(dm=dm)),
            "dipole": np.asarray(mf.dip_moment(dm=dm, unit="AU", verbose=0)), "dm": dm}
