"""PySCF's SCF started from a predicted density (or from one of its own guesses), through ``reference``.

A grid model's density on its box becomes PySCF's starting density matrix by one Kohn-Sham step
(``reference.guess_from_box``); the SCF then runs to the usual tolerance, so the converged energy does not
depend on the guess, only the number of cycles does. No PySCF import here (DESIGN: one door to PySCF).
"""

from __future__ import annotations

import time

from dft_operators import api, reference, units
from dft_operators.io.checkpoint import CheckpointError
from dft_operators.molecule import Molecule


def scf_from_guess(molecule: Molecule, guess, level: reference.Level | None = None, conv_tol: float = 1e-9,
                   max_cycle: int = 100, no_scf: bool = False) -> dict:
    """Runs PySCF's Kohn-Sham SCF from a starting guess.

    Args:
      molecule: the molecule.
      guess: 'minao', 'atom' or 'huckel' (PySCF's guesses), a loaded model (``api.load_model``), or a model's
        name or directory; a model's density is predicted on its box and turned into a density matrix.
      level: the level of theory; default the model's (a model guess) or ``reference.Level()``. A model
        guess needs the level it was trained for.
      conv_tol: SCF energy tolerance in Hartree; max_cycle: most SCF cycles.
      no_scf: skip the SCF (a model guess only): the energies of the predicted density instead
        (``reference.harris_from_box``).
    Returns:
      {"cycles": SCF cycles, "energy": Hartree, "converged": bool, "seconds": wall time of guess and SCF,
       "guess": its name, "guess_seconds": time to make the starting density matrix, "scf_seconds",
       "timings": seconds of each step: model_load, inference (with any compilation), guess_conversion, scf};
      with ``no_scf``: {"energy_harris" (the Harris-Foulkes energy of the predicted density), "energy_one_step"
      (the Kohn-Sham energy after one diagonalisation), "dipole_debye" (its dipole), "guess", "seconds",
      "timings"}.
    Raises:
      ValueError: an unknown guess, or a model trained at another level.
      reference.SCFError: PySCF cannot run the molecule at the level.
    """
    clock = _Clock()
    if isinstance(guess, str) and guess in reference.STANDARD_GUESSES:
        if no_scf:
            raise ValueError(f"no_scf needs a model's density as the guess, not PySCF's {guess!r}")
        level = level or reference.Level()
        name, dm0 = guess, reference.standard_guess(molecule, level, guess)
        clock.lap("guess_conversion")
    else:
        model = _model(guess)
        if level is not None and level != model.level:
            raise ValueError(f"model {model.name} was trained at {model.level.as_dict()}, not {level.as_dict()}")
        level, name = model.level, model.name
        clock.lap("model_load")
        prediction = api.predict(model, molecule)  # the first call on a box shape compiles (or reads JAX's cache)
        clock.lap("inference")
        if no_scf:
            result = reference.harris_from_box(molecule, level, prediction["grid"], prediction["density"])
            clock.lap("harris_and_one_step")
            return {"energy_harris": result["energy_harris"], "energy_one_step": result["energy_one_step"],
                    "dipole_debye": (result["dipole"] * units.DEBYE_PER_AU).tolist(), "guess": name,
                    "seconds": clock.total(), "timings": clock.laps}
        dm0 = reference.guess_from_box(molecule, level, prediction["grid"], prediction["density"])
        clock.lap("guess_conversion")
    guess_seconds = clock.total()
    state = reference.run_ks(molecule, level, dm0=dm0, conv_tol=conv_tol, max_cycle=max_cycle)
    clock.lap("scf")
    return {"cycles": state.cycles, "energy": state.energy, "converged": state.converged,
            "seconds": clock.total(), "guess": name, "guess_seconds": guess_seconds,
            "scf_seconds": state.seconds, "timings": clock.laps}


class _Clock:
    """Wall time of consecutive steps: ``lap(name)`` records the time since the last lap, in seconds."""

    def __init__(self):
        self.start = self.last = time.perf_counter()
        self.laps: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = now - self.last
        self.last = now

    def total(self) -> float:
        return time.perf_counter() - self.start


def _model(guess) -> api.Model:
    if isinstance(guess, api.Model):
        return guess
    try:
        return api.load_model(guess)
    except CheckpointError as err:
        raise ValueError(f"guess {guess!r} is neither one of {', '.join(reference.STANDARD_GUESSES)} nor a model: "
                         f"{err}") from None
