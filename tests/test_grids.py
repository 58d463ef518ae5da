import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dft_operators.grids import GridError, QuadratureGrid, UniformGrid, bucket_size, spectral_resample


def test_box_around_molecule_has_margin_and_even_shape():
    positions = np.array([[0.0, 0.0, 0.0], [3.0, 1.0, -2.0]])
    grid = UniformGrid.around(positions, spacing=0.25, margin=4.0)
    axes = grid.axes()
    for k in range(3):
        assert axes[k][0] <= positions[:, k].min() - 4.0 + 1e-9
        assert axes[k][-1] >= positions[:, k].max() + 4.0 - 0.25
        assert grid.shape[k] % 2 == 0
    np.testing.assert_allclose(grid.points()[1, 2, 3], [axes[0][1], axes[1][2], axes[2][3]])


def test_gaussian_integrates_to_one():
    # A normalised Gaussian of width 0.7 Bohr integrates to 1 by a Riemann sum on a fine enough box.
    grid = UniformGrid.centered([0.1, -0.2, 0.3], 0.2, 48)
    r2 = ((grid.points() - np.array([0.1, -0.2, 0.3])) ** 2).sum(-1)
    sigma = 0.7
    g = np.exp(-r2 / (2 * sigma**2)) / (2 * np.pi * sigma**2) ** 1.5
    assert abs(grid.integrate(g) - 1.0) < 1e-10


@pytest.mark.parametrize("n, m", [(16, 32), (15, 30), (16, 10), (17, 9), (12, 12)])
def test_spectral_resample_is_exact_for_band_limited_fields(n, m):
    # f = cos(2 pi (2x)/L) sin(2 pi y/L) + 0.3 cos(2 pi 3 z / L), band-limited below both Nyquist limits.
    def field(k):
        t = np.arange(k) / k * 2 * np.pi
        x, y, z = np.meshgrid(t, t, t, indexing="ij")
        return np.cos(2 * x) * np.sin(y) + 0.3 * np.cos(3 * z) + 1.0
    with jax.enable_x64(True):
        out = spectral_resample(jnp.asarray(field(n)), (m, m, m))
    np.testing.assert_allclose(out, field(m), atol=1e-12)


def test_spectral_resample_keeps_the_integral():
    rng = np.random.default_rng(0)
    f = rng.random((10, 11, 12))
    with jax.enable_x64(True):
        g = spectral_resample(jnp.asarray(f), (20, 22, 24))
        # The mean (k = 0 term) is preserved, so the integral over the same box is too.
        assert abs(float(g.mean()) - f.mean()) < 1e-12


def test_grid_too_large_is_refused_with_a_reason():
    with pytest.raises(GridError, match="use a larger spacing"):
        UniformGrid((0, 0, 0), 0.01, (1000, 1000, 1000))
    with pytest.raises(GridError, match="invalid box"):
        UniformGrid((0, 0, 0), -1.0, (10, 10, 10))


def test_quadrature_padding_changes_no_integral():
    rng = np.random.default_rng(1)
    grid = QuadratureGrid(rng.normal(size=(37, 3)), rng.random(37))
    values = rng.random(37)
    padded = grid.padded(bucket_size(37, minimum=8))
    assert padded.n_points == 64
    padded_values = np.concatenate([values, np.ones(27)])
    assert np.isclose(padded.integrate(padded_values), grid.integrate(values))
    assert padded.mask.sum() == 37
