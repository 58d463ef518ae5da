"""Where the project keeps what it can compute again: the QM9 index and JAX's compiled programs.

The directory is ``$DFT_OPERATORS_CACHE``, else ``$XDG_CACHE_HOME/dft_operators``, else
``~/.cache/dft_operators``. Imports nothing heavy (the command line calls it before JAX is loaded).
"""

from __future__ import annotations

import os
import sys


def cache_dir() -> str:
    """The cache directory (created by whoever writes into it, not here)."""
    if os.environ.get("DFT_OPERATORS_CACHE"):
        return os.environ["DFT_OPERATORS_CACHE"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "dft_operators")


def enable_compilation_cache() -> str | None:
    """Turns on JAX's persistent compilation cache in ``<cache>/jax`` (every program, however quick to
    compile), so that a second run on the same shapes compiles nothing; ``DFT_OPERATORS_COMPILATION_CACHE=0``
    turns it off. Call before JAX is imported (it sets JAX's environment variables; an already imported JAX
    is configured directly). Returns the directory, or None when off."""
    if os.environ.get("DFT_OPERATORS_COMPILATION_CACHE", "1") == "0":
        return None
    directory = os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(cache_dir(), "jax"))
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    if "jax" in sys.modules:
        jax = sys.modules["jax"]
        jax.config.update("jax_compilation_cache_dir", directory)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    return directory
