"""Shared fixtures; tests run with NaN checking on (STYLE 12)."""

import os
import subprocess
import sys

import jax
import pytest

jax.config.update("jax_debug_nans", True)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def key():
    """An explicit PRNG key for each test."""
    return jax.random.PRNGKey(0)


@pytest.fixture(scope="module")
def one_pyscf_thread():
    """PySCF on one OpenMP thread: bitwise-reproducible sums, and no spinning threads on a shared machine."""
    from pyscf import lib

    threads = lib.num_threads()
    lib.num_threads(1)
    yield
    lib.num_threads(threads)


def run_cli(*args, env=None, check=True, timeout=600):
    """Runs ``dft-operators`` in a subprocess; returns the CompletedProcess (text)."""
    proc = subprocess.run([sys.executable, "-m", "dft_operators.cli", *map(str, args)], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=timeout, cwd=REPO)
    if check and proc.returncode != 0:
        raise AssertionError(f"dft-operators {' '.join(map(str, args))} failed:\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="session")
def tiny_grid_data(tmp_path_factory):
    """A small valence-density dataset: water, methane, ammonia, hydrogen fluoride (2 conformers each) on
    a 20^3 box of spacing 0.5 Bohr, at the default level (LDA, GTH pseudopotentials)."""
    from dft_operators import molecule
    from dft_operators.data.generate import GenerationSettings, generate

    out = str(tmp_path_factory.mktemp("data") / "tiny_grid")
    mols = [molecule.builtin(n) for n in ("water", "methane", "ammonia", "hydrogen-fluoride")]
    generate(mols, out, GenerationSettings(spacing=0.5, box_shape=20, n_conformers=2, displacement=0.05),
             progress=False)
    return out


@pytest.fixture(scope="session")
def two_electron_data(tmp_path_factory):
    """H2 and HeH+ (one displaced conformer each) under random external potentials, all-electron LDA/def2-svp on
    PySCF's level-0 grid (1504 points a molecule), quadrature kind: KineticNet's data, shared by its tests."""
    from dft_operators import molecule, reference
    from dft_operators.data.generate import GenerationSettings, generate

    out = str(tmp_path_factory.mktemp("data") / "two_electron")
    settings = GenerationSettings(kinds=("quadrature",), level=reference.ALL_ELECTRON, grid_level=0, n_conformers=1,
                                  displacement=0.1, random_potential=0.2, seed=0)
    generate([molecule.builtin("h2"), molecule.builtin("heh+")], out, settings, progress=False)
    return out
