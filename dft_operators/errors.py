"""The errors that mean 'bad input' (reported to users in one line) rather than a bug.

Molecule, grid, cube, dataset and checkpoint errors are ``ValueError`` subclasses; the reference layer's
``SCFError`` (defined in the PySCF-free :mod:`dft_operators.level`) and the loop's ``TrainingError`` are added
when their modules are loaded (an error of a module that was never imported cannot have been raised, and
importing it would cost seconds).
"""

import sys

_LAZY = (("dft_operators.level", "SCFError"), ("dft_operators.training.loop", "TrainingError"))


def user_errors() -> tuple[type[BaseException], ...]:
    """The exception types the command line reports as ``error: <message>``."""
    errors = [ValueError, OSError]
    errors += [getattr(sys.modules[m], name) for m, name in _LAZY if m in sys.modules]
    return tuple(errors)
