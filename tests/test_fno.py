"""Spectral convolution and V2Rho-FNO: discretisation invariance, zero-padding, normalisation, jit."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dft_operators.grids import spectral_resample
from dft_operators.models.fno import FNOConfig, box_coordinates, create_fno, normalise
from dft_operators.nn.differential import DifferentialConv3D
from dft_operators.nn.spectral import SpectralConv3D, spectral_conv

MODES = (3, 3, 3)
C_IN, C_OUT = 2, 3
# Jitted once per shape: eager mode would compile every FFT, slice and pad on its own (several times slower).
conv = jax.jit(spectral_conv, static_argnames="out_shape")
resample = jax.jit(spectral_resample, static_argnums=1)


@pytest.fixture(scope="module")
def key():
    # The "rbg" generator: XLA compiles it several times faster than threefry on a CPU (init draws ~10 keys).
    return jax.random.key(0, impl="rbg")


@pytest.fixture(scope="module")
def tiny_fno(key):
    """The tiny FNO and its parameters, made once (compiling ``init`` costs seconds on a CPU)."""
    model = create_fno(FNOConfig.tiny())
    params = jax.jit(model.init)(key, jnp.zeros((1, 8, 8, 8, FNOConfig.tiny().in_channels)))
    return model, params


def random_weights(key, modes=MODES, c_in=C_IN, c_out=C_OUT):
    """Real and imaginary parts of complex weights, each [2 m1, 2 m2, m3, c_in, c_out]."""
    m1, m2, m3 = modes
    kr, ki = jax.random.split(key)
    shape = (2 * m1, 2 * m2, m3, c_in, c_out)
    return jax.random.normal(kr, shape), jax.random.normal(ki, shape)


def band_limited(key, max_k: int, shapes, batch=2, channels=C_IN):
    """One random real field with frequencies |k| <= max_k on each axis, sampled on each grid of ``shapes``.

    The field is white noise on an odd grid of 2 max_k + 1 points (all frequencies -max_k..max_k, no Nyquist
    term) interpolated spectrally: the samples are exact for every grid with more than 2 max_k points.
    """
    base = jax.random.normal(key, (batch, channels) + (2 * max_k + 1,) * 3)  # [batch, c, s, s, s]
    return [jnp.moveaxis(resample(base, shape), 1, -1) for shape in shapes]  # [batch, n, n, n, c] each


def max_relative_error(a, b):
    return float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))


def test_spectral_conv_matches_full_spectrum_definition(key):
    # Textbook form: full rfftn, the four kept corners (kx, ky in 0..m-1 and -m..-1; kz in 0..m-1) mixed
    # by W_k, everything else zero, irfftn; the layer's pruned transforms must give the same numbers.
    k_field, k_weights = jax.random.split(key)
    n, m = 8, MODES[0]
    field, weights = jax.random.normal(k_field, (1, n, n, n, C_IN)), random_weights(k_weights)
    spectrum = np.fft.rfftn(np.asarray(field), axes=(1, 2, 3), norm="forward")  # [1, n, n, n//2 + 1, c_in]
    kept = np.r_[0:m, n - m:n]
    corners = spectrum[:, kept][:, :, kept][:, :, :, :m]  # [1, 2m, 2m, m, c_in]
    out_spectrum = np.zeros(spectrum.shape[:-1] + (C_OUT,), complex)
    w = np.asarray(weights[0]) + 1j * np.asarray(weights[1])
    out_spectrum[np.ix_([0], kept, kept, np.arange(m))] = np.einsum("bxyzi,xyzio->bxyzo", corners, w)
    expected = np.fft.irfftn(out_spectrum, s=(n, n, n), axes=(1, 2, 3), norm="forward")
    assert max_relative_error(conv(field, *weights), expected) < 1e-5


@pytest.mark.parametrize("n", [8, 7], ids=["even", "odd"])
def test_spectral_conv_is_discretisation_invariant(key, n):
    # The input reaches |k| = m on every axis, so it feeds every kept corner (kx, ky = -m included) and
    # also the discarded +m: the DFT coefficients of both samplings are exact, and so are the outputs.
    k_field, k_weights = jax.random.split(key)
    coarse, fine = band_limited(k_field, max(MODES), [(n,) * 3, (2 * n,) * 3])
    weights = random_weights(k_weights)
    out_coarse = conv(coarse, *weights)  # [batch, n, n, n, c_out]
    out_fine = conv(fine, *weights)  # [batch, 2n, 2n, 2n, c_out]
    assert out_coarse.shape == (2, n, n, n, C_OUT) and out_fine.shape == (2, 2 * n, 2 * n, 2 * n, C_OUT)
    assert max_relative_error(out_fine[:, ::2, ::2, ::2], out_coarse) < 1e-5


@pytest.mark.parametrize("n", [8, 7], ids=["even", "odd"])
def test_negative_control_white_noise_is_not_resolution_independent(key, n):
    # White noise on the fine grid, and the same values at the shared points on the coarse grid: its
    # frequencies above the coarse Nyquist rate alias differently, so a grid-independent layer must give
    # different outputs. A layer that acted on array indices (not frequencies) would pass this by mistake
    # and fail the test above; here we check the invariance test has teeth.
    k_field, k_weights = jax.random.split(key)
    fine = jax.random.normal(k_field, (2, 2 * n, 2 * n, 2 * n, C_IN))
    coarse = fine[:, ::2, ::2, ::2]
    weights = random_weights(k_weights)
    error = max_relative_error(conv(fine, *weights)[:, ::2, ::2, ::2], conv(coarse, *weights))
    assert error > 1e-2  # 1000 times the tolerance of the invariance test


@pytest.mark.parametrize("n", [8, 7], ids=["even", "odd"])
def test_out_shape_is_spectral_zero_padding(key, n):
    k_field, k_weights = jax.random.split(key)
    field = jax.random.normal(k_field, (2, n, n, n, C_IN))  # any input: the output is band-limited
    weights = random_weights(k_weights)
    fine_shape = (2 * n,) * 3
    direct = conv(field, *weights, out_shape=fine_shape)  # [batch, 2n, 2n, 2n, c_out]
    resampled = jnp.moveaxis(resample(jnp.moveaxis(conv(field, *weights), -1, 1), fine_shape), 1, -1)
    assert direct.shape == (2,) + fine_shape + (C_OUT,)
    assert max_relative_error(direct, resampled) < 1e-5


def test_too_small_grid_raises(key):
    weights = random_weights(key)
    with pytest.raises(ValueError, match="too small for modes"):
        spectral_conv(jnp.zeros((1, 6, 8, 8, C_IN)), *weights)  # 6 = 2 * 3: kx = -3 is the Nyquist term
    with pytest.raises(ValueError, match="out_shape .* too small"):
        spectral_conv(jnp.zeros((1, 8, 8, 8, C_IN)), *weights, out_shape=(8, 8, 5))
    model = create_fno(FNOConfig.tiny())
    with pytest.raises(ValueError, match="too small for modes"):
        model.init(key, jnp.zeros((1, 6, 6, 6, 1)))


def test_spectral_conv_module_weights_do_not_depend_on_grid(key):
    layer = SpectralConv3D(features=C_OUT, modes=MODES)
    for shape in [(8, 8, 8), (11, 12, 13)]:
        params = jax.eval_shape(layer.init, key, jnp.zeros((1,) + shape + (C_IN,)))
        shapes = {name: p.shape for name, p in params["params"].items()}
        assert shapes == {"weights_real": (6, 6, 3, C_IN, C_OUT), "weights_imag": (6, 6, 3, C_IN, C_OUT)}


def test_differential_kernel_converges_to_a_derivative_on_finer_grids(key):
    """The local path of the FNO: one weight matrix applied to the same smooth field on grids of 16, 32 and
    64 points gives outputs whose differences at shared points shrink about fourfold when h halves (central
    differences converge to the gradient as h^2); a constant field gives zero."""
    k_field, k_init = jax.random.split(key)
    fields = band_limited(k_field, 2, [(16,) * 3, (32,) * 3, (64,) * 3], batch=1)
    layer = DifferentialConv3D(features=C_OUT)
    params = layer.init(k_init, fields[0])
    apply = jax.jit(layer.apply)
    out = [apply(params, f) for f in fields]
    gap_coarse = max_relative_error(out[0], out[1][:, ::2, ::2, ::2])
    gap_fine = max_relative_error(out[1], out[2][:, ::2, ::2, ::2])
    assert gap_fine < 0.35 * gap_coarse and gap_fine < 0.05
    assert float(jnp.max(jnp.abs(apply(params, jnp.ones((1, 8, 8, 8, C_IN)))))) < 1e-5
    with pytest.raises(ValueError, match="cubic grid"):
        layer.apply(params, jnp.zeros((1, 8, 8, 9, C_IN)))


def test_box_coordinates_are_grid_independent():
    coarse, fine = box_coordinates((6, 7, 8)), box_coordinates((12, 14, 16))
    np.testing.assert_allclose(fine[::2, ::2, ::2], coarse, atol=1e-7)
    assert float(coarse.min()) == -1.0 and float(coarse.max()) < 1.0


def test_fno_density_is_non_negative_and_normalises(key, tiny_fno):
    model, params = tiny_fno  # initialised on 8^3, applied on another grid: the weights fit every grid
    fields = jax.random.normal(key, (2, 10, 9, 8, 1))
    apply = jax.jit(model.apply, static_argnames="out_shape")
    density = apply(params, fields)
    assert density.shape == (2, 10, 9, 8)
    assert bool(jnp.all(density >= 0))
    n_electrons, voxel_volume = jnp.array([8.0, 10.0]), jnp.array([0.2**3, 0.3**3])
    rho = normalise(density, n_electrons, voxel_volume)
    np.testing.assert_allclose(rho.sum(axis=(1, 2, 3)) * voxel_volume, n_electrons, rtol=1e-5)
    np.testing.assert_allclose(normalise(density, n_electrons, 0.2**3).sum(axis=(1, 2, 3)) * 0.2**3, n_electrons,
                               rtol=1e-5)
    fine = apply(params, fields, out_shape=(20, 18, 16))  # the same weights on a finer grid
    assert fine.shape == (2, 20, 18, 16) and bool(jnp.all(fine >= 0))


class _Traces:
    """Counts JAX's traces (every jit cache miss traces first) while in the ``with`` block, by JAX's monitoring
    events: ``names`` lists the traced functions."""

    def __enter__(self):
        self.names = []
        jax.monitoring.register_event_duration_secs_listener(self._listen)
        return self

    def _listen(self, event, duration, **kwargs):
        if event == "/jax/core/compile/jaxpr_trace_duration":
            self.names.append(kwargs.get("fun_name"))

    def __exit__(self, *exc):
        jax.monitoring.unregister_event_duration_listener(self._listen)


def test_the_projects_predict_path_compiles_once_per_box(tiny_fno):
    # STYLE 8 through the project's own path (api.predict -> grid_inputs' jitted input builder, grid_density's predict):
    # after one molecule on a box, new weights, another molecule and another electron count on the same box
    # shape trace (and so compile) nothing, and the new weights are used, not ones kept from the first call.
    # (Same padded atom count: the rows carry the atoms padded to a power of two, and a new padded count
    # traces the input builder again, even for the FNO, which does not read them.)
    from dft_operators import api, molecule, reference
    from dft_operators.workflows import grid_inputs

    module, params = tiny_fno  # initialised on 8^3; the FNO's weights fit every grid
    card = {"kind": "fno", "task": dataclasses.asdict(grid_inputs.GridTask()),
            "normalisation": {"mean": [-0.7], "std": [1.3]}, "grid": {"spacing": 0.5, "box_shape": 20, "margin": 2.0},
            "level": reference.Level().as_dict(), "elements": ["H", "C", "N", "O", "F"]}
    model = api.Model("tiny", "", card, module, params)
    doubled = api.Model("tiny", "", card, module, jax.tree.map(lambda p: 2.0 * p, params))
    water, h3 = molecule.builtin("water"), molecule.builtin("h3+")  # 3 atoms each
    first = api.predict(model, water)["density"]
    with _Traces() as traces:
        again = api.predict(doubled, water)["density"]
        other = api.predict(model, h3)  # 2 valence electrons, not 8
    assert traces.names == []
    assert not np.allclose(again, first, rtol=1e-3)  # the doubled weights were used
    assert other["n_electrons"] == pytest.approx(2.0, rel=1e-5)
    with _Traces() as traces:  # control: the counter sees a new shape compile
        api.predict(model, water, refine=2)
    assert traces.names
