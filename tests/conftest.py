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


def run_cli(*args, env=None, check=True, timeout=600):
    """Runs ``dft-operators`` in a subprocess; returns the CompletedProcess (text)."""
    proc = subprocess.run([sys.executable, "-m", "dft_operators.cli", *map(str, args)], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=timeout, cwd=REPO)
    if check and proc.returncode != 0:
        raise AssertionError(f"dft-operators {' '.join(map(str, args))} failed:\n{proc.stderr[-3000:]}")
    return proc
