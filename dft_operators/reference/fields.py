"""A density in the forms models learn from: on a uniform box, with its derivatives and potentials on a
molecular quadrature grid (KineticNet), and as Gaussian density-fitting coefficients (DenSNet).

Density fitting uses the Coulomb metric: rho ~ sum_P c_P chi_P with c = J^-1 b, J_PQ = (P|Q),
b_P = sum_mn D_mn (mn|P), which minimises (rho - rho_fit | rho - rho_fit) = (rho|rho) - b.c.
Everything is evaluated block by block so memory stays bounded for large boxes and basis sets.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
from pyscf import df, dft, gto, scf
from pyscf.gto import ft_ao

from dft_operators.grids import UniformGrid
from dft_operators.reference.level import SCFError, build_mole
from dft_operators.reference.potentials import ionic_potential
from dft_operators.reference.scf import Density, GroundState, atomic_guess

# Values held at once in one block of AO values or integrals (2**22 float64 = 32 MiB).
_BLOCK_VALUES = 2**22
# PySCF's AO derivative components up to second order: value, x, y, z, xx, xy, xz, yy, yz, zz.
_SECOND = {(0, 0): 4, (0, 1): 5, (0, 2): 6, (1, 1): 7, (1, 2): 8, (2, 2): 9}
# PySCF orders real p functions (px, py, pz), i.e. m = (+1, -1, 0); l >= 2 run m = -l .. l.
_P_ORDER = (1, -1, 0)


def _rho_values(mol: gto.Mole, dm: np.ndarray, points: np.ndarray) -> np.ndarray:
    """rho at points [n, 3] (Bohr) -> [n] electrons/Bohr^3, in blocks."""
    step = max(1, _BLOCK_VALUES // mol.nao)
    out = np.empty(len(points))
    for i in range(0, len(points), step):
        ao = dft.numint.eval_ao(mol, points[i:i + step])
        out[i:i + step] = dft.numint.eval_rho(mol, ao, dm, xctype="LDA", hermi=1)
    return out


def density_on_box(density: Density, grid: UniformGrid) -> np.ndarray:
    """The density on a uniform box.

    Args:
      density: a density matrix and the level (basis) it belongs to.
      grid: the box (Bohr).
    Returns:
      rho in electrons/Bohr^3, [nx, ny, nz]; ``grid.integrate`` of it approximates ``density.n_electrons``.
    """
    mol = build_mole(density.molecule, density.level)
    xs, ys, zs = grid.axes()
    out = np.empty(grid.shape)
    step = max(1, _BLOCK_VALUES // (3 * len(ys) * len(zs)))
    for i in range(0, len(xs), step):
        slab = np.stack(np.meshgrid(xs[i:i + step], ys, zs, indexing="ij"), axis=-1)  # [bx, ny, nz, 3]
        out[i:i + step] = _rho_values(mol, density.dm, slab.reshape(-1, 3)).reshape(slab.shape[:-1])
    return out


def density_at_points(density: Density, points: np.ndarray) -> np.ndarray:
    """The density at points [n, 3] (Bohr), [n] electrons/Bohr^3."""
    return _rho_values(build_mole(density.molecule, density.level), density.dm, np.asarray(points, np.float64))


def molecular_quadrature(molecule, level, grid_level: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """PySCF's unpruned molecular quadrature for a molecule: points [n, 3] Bohr, weights [n] Bohr^3."""
    return quadrature_grid(build_mole(molecule, level), grid_level)


def _rho_hessian(ao: np.ndarray, dm: np.ndarray) -> np.ndarray:
    """Second derivatives of rho = sum_mn D_mn phi_m phi_n from AO values up to second order.

    d_i d_j rho = 2 sum_mn D_mn (d_i d_j phi_m phi_n + d_i phi_m d_j phi_n).
    Args:
      ao: [10, n, nao] AO values and derivatives (PySCF's order); dm: symmetric [nao, nao].
    Returns:
      [3, 3, n] in electrons/Bohr^5.
    """
    contracted = ao[:4] @ dm  # [4, n, nao]: sum_n D_mn (phi_n, d_x phi_n, ...)
    hessian = np.empty((3, 3, ao.shape[1]))
    for (i, j), k in _SECOND.items():
        value = 2 * (np.einsum("pm,pm->p", ao[k], contracted[0])
                     + np.einsum("pm,pm->p", ao[1 + i], contracted[1 + j]))
        hessian[i, j] = hessian[j, i] = value
    return hessian


def _xc_potential(mol: gto.Mole, xc: str, ao: np.ndarray, spin_dms: np.ndarray) -> np.ndarray:
    """The (semi-)local xc potential v_xc = de/drho - div(de/d grad rho), averaged over spins, [n] Hartree.

    For GGAs the divergence is evaluated exactly: d_i (de/d u_i) = sum_k f[i, k] d_i u_k with u = (rho,
    grad rho) and f the second derivatives of the energy density. Exact exchange of hybrids is left out.
    """
    ni = dft.numint.NumInt()
    xctype = dft.libxc.xc_type(xc)
    if xctype not in ("LDA", "GGA"):
        raise SCFError(f"v_xc on a quadrature grid needs an LDA or GGA functional, {xc!r} is {xctype}")
    n = ao.shape[1]
    if xctype == "LDA":
        rho = np.stack([dft.numint.eval_rho(mol, ao[0], d, xctype="LDA", hermi=1) for d in spin_dms])
        vxc = ni.eval_xc_eff(xc, rho, deriv=1, xctype="LDA", spin=1)[1]  # [2, 1, n]
        return vxc[:, 0].mean(axis=0)
    rho = np.stack([dft.numint.eval_rho(mol, ao[:4], d, xctype="GGA", hermi=1) for d in spin_dms])  # [2,4,n]
    _, vxc, fxc, _ = ni.eval_xc_eff(xc, rho, deriv=2, xctype="GGA", spin=1)  # [2,4,n], [2,4,2,4,n]
    du = np.empty((3, 2, 4, n))  # d_i of (rho_s, d_x rho_s, d_y rho_s, d_z rho_s)
    for s, d in enumerate(spin_dms):
        du[:, s, 0] = rho[s, 1:4]
        du[:, s, 1:] = _rho_hessian(ao, d)
    divergence = sum(np.einsum("stk...,tk...->s...", fxc[:, i + 1], du[i]) for i in range(3))  # [2, n]
    return (vxc[:, 0] - divergence).mean(axis=0)


def _hartree_potential(mol: gto.Mole, dm: np.ndarray, points: np.ndarray) -> np.ndarray:
    """v_H(r) = sum_mn D_mn (mn | 1/|r - r'|) at points [n, 3] -> [n] Hartree, exact integrals in blocks."""
    step = max(1, _BLOCK_VALUES // mol.nao**2)
    return np.concatenate([np.einsum("pmn,mn->p", mol.intor("int1e_grids", grids=points[i:i + step]), dm)
                           for i in range(0, len(points), step)])


def quadrature_grid(mol: gto.Mole, grid_level: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """PySCF's molecular quadrature of a grid level (0-9), Becke partition, unpruned.

    Returns:
      points [n, 3] in Bohr and weights [n] in Bohr^3.
    """
    grids = dft.gen_grid.Grids(mol)
    grids.level = grid_level
    grids.prune = None  # NWChem pruning leaves ~1e-5 errors in HeH+ integrals at every level
    grids.build(with_non0tab=False)
    return np.asarray(grids.coords), np.asarray(grids.weights)


def quadrature_fields(state: GroundState, grid_level: int = 2) -> dict[str, np.ndarray]:
    """Fields of a ground state on PySCF's molecular quadrature grid (Becke partition, unpruned).

    The Kohn-Sham Euler equation gives the kinetic functional derivative, dT_s/drho = mu - v_s with
    v_s = v_ext + v_hartree + v_xc. It is exact only in a complete basis, for all-electron levels (the
    non-local pseudopotential part is not in v_ext) and closed shells; in a Gaussian basis it holds in
    the weak sense: int rho (mu - v_s) = T_s + N mu - sum_i n_i eps_i.

    Args:
      state: the ground state.
      grid_level: PySCF grid level (0-9).
    Returns:
      "points" [n, 3] Bohr, "weights" [n] Bohr^3, "rho" [n] electrons/Bohr^3, "grad_rho" [n, 3],
      "lap_rho" [n], "tau" [n] Hartree/Bohr^3 (positive KS kinetic energy density 1/2 sum_i n_i
      |grad phi_i|^2), "v_ext" [n] Hartree (nuclei -sum Z/|r-R|, or the local pseudopotential, plus the
      random potential), "v_hartree" [n], "v_xc" [n] (LDA or GGA functional derivative; the average of
      the two spin potentials for open shells), "rho0" [n] (the atomic guess), "t_s" scalar = tr(D T)
      Hartree, "mu" scalar = HOMO Hartree, "dts_drho" [n] = mu - (v_ext + v_hartree + v_xc) Hartree.
    """
    density = state.density
    molecule, level, dm = density.molecule, density.level, density.dm
    mol = build_mole(molecule, level)
    points, weights = quadrature_grid(mol, grid_level)
    spin_dms = state.spin_dms
    dm0 = atomic_guess(molecule, level).dm
    n = len(points)
    rho, tau, lap_rho, v_xc, rho0 = (np.empty(n) for _ in range(5))
    grad_rho = np.empty((n, 3))
    step = max(1, _BLOCK_VALUES // (10 * mol.nao))
    for i in range(0, n, step):
        block = slice(i, i + step)
        ao = dft.numint.eval_ao(mol, points[block], deriv=2)  # [10, b, nao]
        values = dft.numint.eval_rho(mol, ao, dm, xctype="MGGA", hermi=1, with_lapl=True)  # [6, b]
        rho[block], lap_rho[block], tau[block] = values[0], values[4], values[5]
        grad_rho[block] = values[1:4].T
        v_xc[block] = _xc_potential(mol, level.xc, ao, spin_dms)
        rho0[block] = dft.numint.eval_rho(mol, ao[0], dm0, xctype="LDA", hermi=1)
    v_ext = ionic_potential(molecule, level, points)
    if state.external is not None:
        v_ext = v_ext + state.external.values(points)
    v_hartree = _hartree_potential(mol, dm, points)
    mu = state.homo
    return {
        "points": points, "weights": weights, "rho": rho, "grad_rho": grad_rho, "lap_rho": lap_rho,
        "tau": tau, "v_ext": v_ext, "v_hartree": v_hartree, "v_xc": v_xc, "rho0": rho0,
        "t_s": np.float64(np.einsum("mn,nm->", dm, mol.intor_symmetric("int1e_kin"))),
        "mu": np.float64(mu), "dts_drho": mu - (v_ext + v_hartree + v_xc),
    }


def _aux_labels(auxmol: gto.Mole) -> np.ndarray:
    """(atom index, l, m) of every auxiliary function in PySCF's order, int [naux, 3]."""
    labels = []
    for shell in range(auxmol.nbas):
        atom, l = auxmol.bas_atom(shell), auxmol.bas_angular(shell)
        ms = _P_ORDER if l == 1 else range(-l, l + 1)
        labels += [(atom, l, m) for _ in range(auxmol.bas_nctr(shell)) for m in ms]
    return np.array(labels, dtype=np.int64).reshape(-1, 3)


def aux_integrals(auxmol: gto.Mole) -> np.ndarray:
    """int chi_P(r) dr of every auxiliary function in Bohr^3, [naux] in PySCF's order (zero unless l = 0)."""
    integrals = ft_ao.ft_ao(auxmol, np.zeros((1, 3)))[0].real  # the Fourier transform at G = 0
    integrals[_aux_labels(auxmol)[:, 1] > 0] = 0.0  # exactly, rather than to rounding
    return integrals


def _projections(mol: gto.Mole, auxmol: gto.Mole, dm: np.ndarray) -> np.ndarray:
    """b_P = sum_mn D_mn (mn|P), the Coulomb integrals of rho with each aux function, [naux], by aux blocks."""
    offsets = auxmol.ao_loc
    out, start = [], 0
    while start < auxmol.nbas:
        stop = start + 1
        while stop < auxmol.nbas and mol.nao**2 * (offsets[stop + 1] - offsets[start]) <= _BLOCK_VALUES:
            stop += 1
        eri = df.incore.aux_e2(mol, auxmol, "int3c2e", aosym="s1",
                               shls_slice=(0, mol.nbas, 0, mol.nbas, start, stop))  # [nao, nao, block]
        out.append(np.einsum("mnp,mn->p", eri.reshape(mol.nao, mol.nao, -1), dm))
        start = stop
    return np.concatenate(out)


def fit_coefficients(density: Density, aux_basis: str | None = None, with_error: bool = True) -> dict:
    """Coulomb-metric density fitting of a density matrix onto an auxiliary basis.

    Args:
      density: the density (its level gives the orbital basis and pseudopotential).
      aux_basis: auxiliary basis name; default ``density.level.aux_basis``.
      with_error: also compute "coulomb_error", which needs (rho|rho): a four-centre Coulomb build, the
        dearest step of the fit.
    Returns:
      "coefficients" [naux] c_P; "coulomb_error" (rho - rho_fit | rho - rho_fit) in Hartree (>= 0), only
      ``with_error``;
      "n_electrons_fit" sum_P c_P int chi_P; "aux_basis" the name; "aux_labels" int [naux, 3] of
      (atom index, l, m), with PySCF's real-harmonic order (p: m = +1, -1, 0, i.e. px, py, pz);
      "aux_integrals" [naux] int chi_P(r) dr in Bohr^3 (zero unless l = 0).
    Raises:
      SCFError: the auxiliary basis is not defined for an element of the molecule.
    """
    aux_basis = density.level.aux_basis if aux_basis is None else aux_basis
    mol = build_mole(density.molecule, density.level)
    auxmol = build_mole(density.molecule, density.level, basis=aux_basis)
    metric = auxmol.intor("int2c2e")  # [naux, naux]
    b = _projections(mol, auxmol, density.dm)
    try:
        coefficients = scipy.linalg.cho_solve(scipy.linalg.cho_factor(metric), b)
    except np.linalg.LinAlgError:
        coefficients = np.linalg.lstsq(metric, b, rcond=1e-12)[0]
    integrals = aux_integrals(auxmol)
    fit = {"coefficients": coefficients, "n_electrons_fit": float(coefficients @ integrals),
           "aux_basis": aux_basis, "aux_labels": _aux_labels(auxmol), "aux_integrals": integrals}
    if with_error:
        vj = scf.hf.get_jk(mol, density.dm, hermi=1, with_k=False)[0]
        self_energy = np.einsum("mn,nm->", density.dm, vj)  # (rho|rho)
        fit["coulomb_error"] = float(max(self_energy - b @ coefficients, 0.0))
    return fit
