"""dft_operators: neural operators for electronic-structure maps, in JAX, with PySCF as the reference.

The public API (imported lazily, so ``import dft_operators`` stays cheap):
  train, evaluate, predict, load_model, list_models   from :mod:`dft_operators.api`
  Molecule, builtin, from_xyz, from_smiles            from :mod:`dft_operators.molecule`
  UniformGrid, QuadratureGrid                         from :mod:`dft_operators.grids`
"""

import importlib

__version__ = "0.1.0"

_LAZY = {
    "train": "api", "evaluate": "api", "predict": "api", "load_model": "api", "list_models": "api",
    "Molecule": "molecule", "builtin": "molecule", "from_xyz": "molecule", "from_smiles": "molecule",
    "UniformGrid": "grids", "QuadratureGrid": "grids",
}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f"dft_operators.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'dft_operators' has no attribute {name!r}")


__all__ = sorted(_LAZY) + ["__version__"]
