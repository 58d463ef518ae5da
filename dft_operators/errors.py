"""The errors that mean 'bad input' (reported to users in one line) rather than a bug."""

from dft_operators.grids import GridError
from dft_operators.io.checkpoint import CheckpointError
from dft_operators.io.cube import CubeError
from dft_operators.io.dataset import DatasetError
from dft_operators.molecule import MoleculeError
from dft_operators.reference import SCFError
from dft_operators.training.loop import TrainingError

USER_ERRORS = (MoleculeError, GridError, CubeError, DatasetError, CheckpointError, SCFError, TrainingError,
               ValueError, FileNotFoundError)
