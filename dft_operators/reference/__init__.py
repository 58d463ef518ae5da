"""The reference layer: PySCF Kohn-Sham ground states and the fields models learn from.

This is the only package of the project that imports PySCF, and it does so lazily: ``reference.Level``,
``ALL_ELECTRON``, ``SCFError`` and ``level_electrons`` come from :mod:`dft_operators.level` (no PySCF), and
every other name (and submodule) is imported on first use, so ``from dft_operators import reference`` costs
nothing and code that only names a level never loads PySCF. Training and evaluation read what generation
stored and never touch the PySCF-backed names. Atomic units throughout (Bohr, Hartree).
"""

import importlib

from dft_operators.level import ALL_ELECTRON, Level, SCFError, level_electrons

# name -> submodule that defines it; imported (with PySCF) on first access.
_LAZY = {
    "AtomicFields": "atomic_fields", "atomic_density_on_box": "atomic_fields",
    "density_at_points": "fields", "density_on_box": "fields", "fit_coefficients": "fields",
    "molecular_quadrature": "fields", "quadrature_fields": "fields",
    "STANDARD_GUESSES": "guess", "guess_from_box": "guess", "harris_from_box": "guess", "standard_guess": "guess",
    "basis_on_points": "orbital_free", "ofdft_integrals": "orbital_free",
    "RandomPotential": "potentials", "screened_ionic_potential": "potentials",
    "Density": "scf", "GroundState": "scf", "atomic_guess": "scf", "run_ks": "scf",
    "harmonic_ir": "vibrations", "optimize_geometry": "vibrations", "basis_shells": "level", "check_level": "level",
}
_SUBMODULES = ("atomic_fields", "density_basis", "fields", "guess", "level", "orbital_free", "potentials", "scf", "vibrations")
assert not set(_LAZY) & set(_SUBMODULES)  # a submodule's import would rebind the name to the module


def __getattr__(name):
    if name in _LAZY:
        module = importlib.import_module(f"{__name__}.{_LAZY[name]}")
        globals().update({n: getattr(module, n) for n, m in _LAZY.items() if m == _LAZY[name]})
        return globals()[name]
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY) | set(_SUBMODULES))


__all__ = ["ALL_ELECTRON", "Level", "SCFError", "level_electrons", *_LAZY, "density_basis"]
