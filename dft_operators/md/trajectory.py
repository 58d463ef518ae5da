"""Recorded MD frames: :class:`Trajectory` (numpy, float64), saved as ``.npz`` (:func:`load_trajectory`)
or extended XYZ; the thermostats a run may record and the degrees of freedom its temperature counts.

Atomic units inside (Bohr, electron masses, Hartree, e*Bohr); fs and Kelvin for the frame spacing and
the temperature, Angstrom and eV in the XYZ file.
"""

from __future__ import annotations

import dataclasses
import os
import zipfile
import zlib

import numpy as np

from dft_operators import units

THERMOSTATS = ("nve", "langevin")
_FORMAT = "dft_operators.trajectory/1"


def degrees_of_freedom(n_atoms: int, thermostat: str) -> int:
    """Kinetic degrees of freedom used for temperatures: 3N - 3 in NVE, where the centre-of-mass momentum
    is removed at the start and conserved; 3N under Langevin, whose friction and noise act on every
    Cartesian component, centre of mass included, so that <K> = 3N k_B T / 2. One atom keeps 3."""
    return 3 * n_atoms - 3 if thermostat == "nve" and n_atoms > 1 else 3 * n_atoms


@dataclasses.dataclass(frozen=True, eq=False)
class Trajectory:
    """Recorded MD frames (numpy, float64).

    Attributes:
      numbers: [n_atoms] atomic numbers.
      masses: [n_atoms] electron masses.
      positions: [n_frames, n_atoms, 3] Bohr.
      velocities: [n_frames, n_atoms, 3] Bohr per a.u. time.
      potential: [n_frames] potential energy, Hartree.
      kinetic: [n_frames] kinetic energy, Hartree.
      dipoles: [n_frames, 3] e*Bohr.
      frame_dt_fs: time between frames, fs.
      thermostat: ``"nve"`` or ``"langevin"``.
      temperature_k: the requested temperature, K.
    """

    numbers: np.ndarray
    masses: np.ndarray
    positions: np.ndarray
    velocities: np.ndarray
    potential: np.ndarray
    kinetic: np.ndarray
    dipoles: np.ndarray
    frame_dt_fs: float
    thermostat: str
    temperature_k: float

    def __post_init__(self):
        n_frames, n_atoms = self.potential.shape[0], self.numbers.shape[0]
        expected = {"numbers": (n_atoms,), "masses": (n_atoms,), "positions": (n_frames, n_atoms, 3),
                    "velocities": (n_frames, n_atoms, 3), "potential": (n_frames,), "kinetic": (n_frames,),
                    "dipoles": (n_frames, 3)}
        for name, shape in expected.items():
            if np.shape(getattr(self, name)) != shape:
                raise ValueError(f"trajectory {name} has shape {np.shape(getattr(self, name))}, "
                                 f"expected {shape}")
        if self.thermostat not in THERMOSTATS or not self.frame_dt_fs > 0:
            raise ValueError(f"bad trajectory metadata: thermostat={self.thermostat!r}, "
                             f"frame_dt_fs={self.frame_dt_fs}")

    @property
    def times_fs(self) -> np.ndarray:
        """[n_frames] time of each frame, fs."""
        return np.arange(len(self.potential)) * self.frame_dt_fs

    @property
    def total(self) -> np.ndarray:
        """[n_frames] total energy potential + kinetic, Hartree."""
        return self.potential + self.kinetic

    @property
    def temperature(self) -> np.ndarray:
        """[n_frames] instantaneous temperature 2 K / (n_dof k_B), K (see :func:`degrees_of_freedom`)."""
        n_dof = degrees_of_freedom(len(self.numbers), self.thermostat)
        return np.asarray(2.0 * self.kinetic / (n_dof * units.BOLTZMANN_HARTREE_PER_K))

    @property
    def energy_drift(self) -> float:
        """|slope| x duration of the least-squares line through the total energy against time, Hartree."""
        t = self.times_fs
        if len(t) < 2:
            return 0.0
        return float(abs(np.polyfit(t, self.total, 1)[0]) * (t[-1] - t[0]))

    def save(self, path: str | os.PathLike) -> None:
        """Writes an ``.npz`` archive to exactly ``path`` (read back with :func:`load_trajectory`)."""
        fields = {f.name: np.asarray(getattr(self, f.name)) for f in dataclasses.fields(self)}
        with open(path, "wb") as f:
            np.savez(f, format=np.asarray(_FORMAT), **fields)

    def write_xyz(self, path: str | os.PathLike) -> None:
        """Writes extended XYZ (Angstrom), one frame per block, readable by ASE and VMD. The comment
        holds ``energy`` (potential, eV, ASE's convention), ``potential_hartree``, ``kinetic_hartree``,
        ``time_fs`` and ``dipole`` (e*Angstrom)."""
        from dft_operators.molecule import SYMBOLS
        symbols = [SYMBOLS[z] if 0 < z < len(SYMBOLS) else "X" for z in self.numbers]
        lines = []
        for i, r in enumerate(self.positions * units.ANGSTROM_PER_BOHR):
            mu = " ".join(f"{x:.10f}" for x in self.dipoles[i] * units.ANGSTROM_PER_BOHR)
            energy_ev = self.potential[i] * units.HARTREE_TO_EV
            lines += [str(len(symbols)), f'Properties=species:S:1:pos:R:3 energy={energy_ev:.10f} '
                      f'potential_hartree={self.potential[i]:.12f} kinetic_hartree={self.kinetic[i]:.12f} '
                      f'time_fs={self.times_fs[i]:.6f} dipole="{mu}" pbc="F F F"']
            lines += [f"{s:<2s} {x:16.10f} {y:16.10f} {z:16.10f}" for s, (x, y, z) in zip(symbols, r)]
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")


def load_trajectory(path: str | os.PathLike) -> Trajectory:
    """Reads a :meth:`Trajectory.save` archive; ``ValueError`` naming ``path`` if it is not one."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such trajectory file")
    bad = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error)
    try:
        data = np.load(path, allow_pickle=False)
    except bad as err:
        raise ValueError(f"{path}: not a trajectory file (unreadable as .npz: {err})") from err
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ValueError(f"{path}: not a trajectory file (a single .npy array, expected an .npz archive)")
    with data:
        names = [f.name for f in dataclasses.fields(Trajectory)]
        missing = [k for k in ["format", *names] if k not in data.files]
        if missing:
            raise ValueError(f"{path}: not a trajectory file (missing keys {missing})")
        try:
            if str(data["format"]) != _FORMAT:
                raise ValueError(f"format {str(data['format'])!r}, expected {_FORMAT!r}")
            fields = {k: data[k] for k in names}
            fields.update(thermostat=str(fields["thermostat"]), frame_dt_fs=float(fields["frame_dt_fs"]),
                          temperature_k=float(fields["temperature_k"]))
            return Trajectory(**fields)
        except (*bad, TypeError) as err:
            raise ValueError(f"{path}: corrupt trajectory file ({err})") from err
