"""Atomic fingerprints on the device: against a brute-force float64 reference, analytic integrals, padding,
vmap, no recompilation, translation invariance (with a negative control) and unknown elements."""

import functools
import logging

import jax
import numpy as np
import pytest

from dft_operators.data import fingerprints as fp
from dft_operators.grids import UniformGrid

SYMBOL_Z = {"H": 1, "C": 6, "N": 7, "O": 8, "F": 9}


def reference_fingerprints(numbers, positions, grid: UniformGrid) -> np.ndarray:
    """Brute force in float64: every channel summed atom by atom over all grid points, no separability."""
    points = grid.points()  # [nx, ny, nz, 3]
    out = np.zeros(grid.shape + (fp.n_channels(),))
    for e, symbol in enumerate(fp.ELEMENTS):
        for w, s in enumerate(fp.WIDTHS):
            for z, r in zip(numbers, positions):
                if z == SYMBOL_Z[symbol]:
                    d2 = ((points - r) ** 2).sum(-1)
                    out[..., e * len(fp.WIDTHS) + w] += (2 * np.pi * s**2) ** -1.5 * np.exp(-d2 / (2 * s**2))
    return out


def random_molecule(seed: int, n_atoms: int, spread: float = 2.5):
    """Atoms of H, C, N, O (no F: one channel group stays empty) within +-spread Bohr of 0."""
    rng = np.random.default_rng(seed)
    return rng.choice([1, 6, 7, 8], n_atoms), rng.uniform(-spread, spread, (n_atoms, 3))


def test_matches_brute_force_reference():
    numbers, positions = random_molecule(0, 7)
    grid = UniformGrid.centered((0.2, -0.1, 0.3), 0.35, (24, 19, 22))  # even and odd axes
    ref = reference_fingerprints(numbers, positions, grid)
    host = fp.atomic_fingerprints(numbers, positions, grid)
    assert isinstance(host, np.ndarray) and host.dtype == np.float32 and host.shape == ref.shape
    np.testing.assert_allclose(host, ref, rtol=1e-5, atol=1e-6 * ref.max())
    device = fp.box_fingerprints(*fp.pad_atoms(numbers, positions, 7), np.asarray(grid.origin), grid.spacing,
                                 grid.shape)
    np.testing.assert_allclose(np.asarray(device), ref, rtol=1e-5, atol=1e-6 * ref.max())


def test_channels_integrate_to_atom_counts():
    # The integral of a normalised 3D Gaussian is 1, so channel (e, s) integrates to the number of atoms of
    # element e. On the grid the integral is a Riemann sum; by Poisson summation its relative error per axis
    # is 2 exp(-2 pi^2 s^2 / h^2) = 5e-9 for the narrowest s = h = 0.5 Bohr, and the box (56 points, 27.5
    # Bohr) leaves > 6 widths of the widest Gaussian (s = 2) beside every atom: a tail of < 1e-8. What
    # remains is float32 round-off.
    numbers, positions = random_molecule(1, 9, spread=1.5)
    grid = UniformGrid.centered((0.0, 0.0, 0.0), 0.5, (56, 56, 56))
    field = fp.atomic_fingerprints(numbers, positions, grid)
    integrals = grid.integrate(np.moveaxis(field.astype(np.float64), -1, 0))  # [c]
    expected = [np.sum(numbers == SYMBOL_Z[e]) for e in fp.ELEMENTS for _ in fp.WIDTHS]
    assert expected[-1] == 0  # the empty F channels are a control: exactly zero
    np.testing.assert_allclose(integrals, expected, rtol=1e-5, atol=1e-6)


def test_padding_atoms_change_nothing():
    numbers, positions = random_molecule(2, 5)
    grid = UniformGrid.centered((0.0, 0.0, 0.0), 0.4, (20, 20, 20))
    args = (np.asarray(grid.origin), grid.spacing, grid.shape)
    unpadded = fp.box_fingerprints(*fp.pad_atoms(numbers, positions, 5), *args)
    z, r, mask = fp.pad_atoms(numbers, positions, 8)
    z[5:], r[5:] = 6, 0.3  # padding that looks like carbon atoms in the box: the mask alone must hide it
    padded = fp.box_fingerprints(z, r, mask, *args)
    np.testing.assert_allclose(np.asarray(padded), np.asarray(unpadded), rtol=1e-6, atol=1e-7)  # summation order
    unmasked = fp.box_fingerprints(z, r, np.ones(8, bool), *args)  # negative control
    assert not np.allclose(np.asarray(unmasked), np.asarray(unpadded))
    with pytest.raises(ValueError, match="cannot pad"):
        fp.pad_atoms(numbers, positions, 4)


def test_vmap_over_molecules_equals_separate_calls():
    grid_shape, spacing = (16, 18, 20), 0.45
    molecules = [random_molecule(3, 4), random_molecule(4, 6)]
    padded = [fp.pad_atoms(z, r, 6) for z, r in molecules]
    origins = np.array([[-3.0, -4.0, -4.5], [-3.5, -3.8, -4.1]])
    batch = [np.stack(parts) for parts in zip(*padded)]  # numbers [2, 6], positions [2, 6, 3], mask [2, 6]
    batched = jax.vmap(functools.partial(fp.box_fingerprints, spacing=spacing, shape=grid_shape))(*batch, origins)
    assert batched.shape == (2, *grid_shape, fp.n_channels())
    for i in range(2):
        single = fp.box_fingerprints(*padded[i], origins[i], spacing, grid_shape)
        np.testing.assert_allclose(np.asarray(batched[i]), np.asarray(single), rtol=1e-6, atol=1e-7)


def test_no_recompilation_for_new_positions(caplog):
    grid_shape = (11, 12, 13)  # used by no other test, so the first call here compiles
    numbers, positions = random_molecule(5, 3)
    mask = np.ones(3, bool)
    with jax.log_compiles(), caplog.at_level(logging.WARNING):
        first = fp.box_fingerprints(numbers, positions, mask, np.full(3, -2.0), 0.4, grid_shape)
        second = fp.box_fingerprints(numbers, positions + 0.1, mask, np.full(3, -2.5), 0.4, grid_shape)
    compiles = [r for r in caplog.records if "Compiling jit(_box_fingerprints)" in r.getMessage()]
    assert len(compiles) == 1
    assert not np.allclose(np.asarray(first), np.asarray(second))


def test_translating_atoms_and_box_together_changes_nothing():
    numbers, positions = random_molecule(6, 6)
    grid = UniformGrid.centered((0.0, 0.0, 0.0), 0.4, (20, 20, 20))
    mask = np.ones(6, bool)
    shift = np.array([137.3, -52.9, 81.1])
    field = fp.box_fingerprints(numbers, positions, mask, np.asarray(grid.origin), 0.4, grid.shape)
    moved = fp.box_fingerprints(numbers, positions + shift, mask, np.asarray(grid.origin) + shift, 0.4, grid.shape)
    # Rounding the inputs near 140 Bohr to float32 moves each coordinate by up to half an ulp, 7.6e-6 Bohr;
    # a Gaussian of width s = 0.5 changes by at most exp(-1/2)/s = 1.2 of its peak per Bohr, so atom and box
    # rounding together allow 2 * 7.6e-6 * 1.2 * sqrt(3) = 3.2e-5 of the peak. Nothing else may differ.
    np.testing.assert_allclose(np.asarray(moved), np.asarray(field), rtol=0, atol=5e-5 * float(field.max()))
    host = fp.atomic_fingerprints(numbers, positions + shift, UniformGrid(tuple(grid.origin + shift), 0.4, grid.shape))
    np.testing.assert_allclose(host, np.asarray(field), rtol=0, atol=1e-6 * float(field.max()))  # float64 offsets
    atoms_only = fp.box_fingerprints(numbers, positions + [0.2, 0, 0], mask, np.asarray(grid.origin), 0.4,
                                     grid.shape)  # negative control: moving the atoms alone changes the field
    assert np.abs(np.asarray(atoms_only - field)).max() > 1e-2 * float(field.max())


def test_unknown_element_is_refused_on_the_host_and_masked_on_the_device():
    grid = UniformGrid.centered((0.0, 0.0, 0.0), 0.5, (12, 12, 12))
    with pytest.raises(ValueError, match="Cl"):
        fp.atomic_fingerprints([8, 17], [[0, 0, 0], [1.5, 0, 0]], grid)
    args = (np.asarray(grid.origin), grid.spacing, grid.shape)
    with_cl = fp.box_fingerprints(np.array([8, 17]), np.array([[0, 0, 0], [1.5, 0, 0]]), np.ones(2, bool), *args)
    oxygen = fp.box_fingerprints(np.array([8]), np.zeros((1, 3)), np.ones(1, bool), *args)
    np.testing.assert_array_equal(np.asarray(with_cl), np.asarray(oxygen))  # chlorine contributes nothing
    fp.check_elements([[8, 1, 17]], atom_mask=[[True, True, False]])  # padding is not checked
    with pytest.raises(ValueError, match="Cl"):
        fp.check_elements([[8, 1, 17]])
