"""Density fitting: Gaussian auxiliary-basis coefficients of a density in the Coulomb metric.

rho(r) ~ sum_P c_P chi_P(r) with c = J^-1 b, J_PQ = (P|Q), b_P = sum_mn D_mn (mn|P); this minimises the
Coulomb self-energy of the error, (rho - rho_fit | rho - rho_fit) = (rho|rho) - b.c (the targets of DenSNet).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
from pyscf import df, gto, scf
from pyscf.gto import ft_ao

from dft_operators.reference.level import build_mole
from dft_operators.reference.scf import Density

# Values held at once in one block of three-centre integrals (2**22 float64 = 32 MiB).
_BLOCK_VALUES = 2**22
# PySCF orders real p functions (px, py, pz), i.e. m = (+1, -1, 0); l >= 2 run m = -l .. l.
_P_ORDER = (1, -1, 0)


def _aux_labels(auxmol: gto.Mole) -> np.ndarray:
    """(atom index, l, m) of every auxiliary function in PySCF's order, int [naux, 3]."""
    labels = []
    for shell in range(auxmol.nbas):
        atom, l = auxmol.bas_atom(shell), auxmol.bas_angular(shell)
        ms = _P_ORDER if l == 1 else range(-l, l + 1)
        labels += [(atom, l, m) for _ in range(auxmol.bas_nctr(shell)) for m in ms]
    return np.array(labels, dtype=np.int64).reshape(-1, 3)


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


def fit_coefficients(density: Density, aux_basis: str | None = None) -> dict:
    """Coulomb-metric density fitting of a density matrix onto an auxiliary basis.

    Args:
      density: the density (its level gives the orbital basis and pseudopotential).
      aux_basis: auxiliary basis name; default ``density.level.aux_basis``.
    Returns:
      "coefficients" [naux] c_P; "coulomb_error" (rho - rho_fit | rho - rho_fit) in Hartree (>= 0);
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
    vj = scf.hf.get_jk(mol, density.dm, hermi=1, with_k=False)[0]
    self_energy = np.einsum("mn,nm->", density.dm, vj)  # (rho|rho)
    integrals = ft_ao.ft_ao(auxmol, np.zeros((1, 3)))[0].real  # [naux]: Fourier transform at G = 0
    return {
        "coefficients": coefficients,
        "coulomb_error": float(max(self_energy - b @ coefficients, 0.0)),
        "n_electrons_fit": float(coefficients @ integrals),
        "aux_basis": aux_basis,
        "aux_labels": _aux_labels(auxmol),
        "aux_integrals": integrals,
    }
