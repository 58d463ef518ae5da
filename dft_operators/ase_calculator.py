"""``AseCalculator``: a JAX energy function as an ASE calculator (energy, forces, dipole in ASE units).

ASE is imported on first access of ``AseCalculator`` (PEP 562), so importing this module does not need it.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from dft_operators import units


def _ase_calculator_class():
    from ase.calculators.calculator import Calculator, all_changes

    class AseCalculator(Calculator):
        """ASE calculator from ``energy_fn(numbers np.ndarray[int] [n], positions jax.Array [n, 3] Bohr)
        -> (energy Hartree, dipole [3] e*Bohr)``; jits value_and_grad once per atomic-numbers tuple and
        returns ASE units: energy eV, forces eV/Angstrom, dipole e*Angstrom."""

        implemented_properties = ["energy", "forces", "dipole"]

        def __init__(self, energy_fn, **kwargs):
            super().__init__(**kwargs)
            self.energy_fn, self._compiled = energy_fn, {}

        def _function(self, numbers):
            key = tuple(int(z) for z in numbers)
            if key not in self._compiled:
                potential = functools.partial(self.energy_fn, np.array(key))  # numbers stay concrete
                self._compiled[key] = jax.jit(jax.value_and_grad(potential, has_aux=True))
            return self._compiled[key]

        def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
            super().calculate(atoms, properties, system_changes)
            positions = jnp.asarray(self.atoms.positions * units.BOHR_PER_ANGSTROM, dtype=float)
            (energy, dipole), grad = self._function(self.atoms.numbers)(positions)
            ev_per_angstrom = units.HARTREE_TO_EV * units.BOHR_PER_ANGSTROM  # from Hartree/Bohr
            self.results = {"energy": float(energy) * units.HARTREE_TO_EV,
                            "forces": -np.asarray(grad, np.float64) * ev_per_angstrom,
                            "dipole": np.asarray(dipole, np.float64) * units.ANGSTROM_PER_BOHR}

    return AseCalculator


def __getattr__(name: str):
    # PEP 562: ``AseCalculator`` subclasses ASE's Calculator, so ASE is imported on first access only.
    if name == "AseCalculator":
        globals()[name] = cls = _ase_calculator_class()
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
