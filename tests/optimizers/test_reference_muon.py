"""Muon against optax 0.2.8 ``contrib.muon`` over 100 steps, 2-D and N-D kernels.

Conventions pinned here (all as optax):

* EMA momentum with bias correction; Nesterov as ``beta m / (1 - beta^(t+1))
  + (1 - beta) g / (1 - beta^t)``; ``nesterov=False`` differs;
* Newton-Schulz with the quintic coefficients ``(3.4445, -4.7750, 2.0315)``
  after a Frobenius normalization with ``epsilon``;
* scale ``sqrt(max(1, fan_out / fan_in))`` by default, ``consistent_rms *
  sqrt(max(fan_in, fan_out))`` when set (Moonlight);
* an N-D kernel ``(..., out)`` is the matrix ``prod(shape[:-1]) x out``:
  optax ``MuonDimensionNumbers(reduction_axis=(0, ..., n - 2), output_axis=n - 1)``;
* every other variable gets AdamW (NAdamW under ``nesterov``) with its own
  learning rate and decay.

float16 variables: against optax on float16 parameters within 1e-2 (ours
orthogonalizes in float32, optax in float16).
"""

import numpy as np
import optax
import pytest

from keras_trainkit.optimizers import Muon
from keras_trainkit.optimizers.muon import newton_schulz
from tests.optimizers import reference_drivers as tr
from tests.optimizers import reference_problems as rp


@pytest.mark.parametrize("name, lr", [("quadratic", 0.01), ("rosenbrock", 0.002)])
def test_matches_optax_2d(name, lr):
    problem = rp.PROBLEMS[name]()
    ours = rp.run_keras(Muon(lr), problem)
    reference = rp.run_optax(optax.contrib.muon(lr), problem)
    rp.assert_moved(reference, problem)
    rp.assert_matches(ours, reference)


def test_without_nesterov_matches_optax():
    problem = rp.quadratic(seed=1)
    ours = rp.run_keras(Muon(0.01, nesterov=False, beta=0.9), problem)
    reference = rp.run_optax(optax.contrib.muon(0.01, nesterov=False, beta=0.9), problem)
    nesterov = rp.run_optax(optax.contrib.muon(0.01, beta=0.9), problem)
    rp.assert_matches(ours, reference)
    rp.assert_differs(ours, nesterov)


def test_consistent_rms_own_adam_rate_and_decays_match_optax():
    problem = rp.quadratic(seed=2)
    kwargs = dict(consistent_rms=0.2, weight_decay=0.1, adam_weight_decay=0.05, adam_learning_rate=0.003)
    ours = rp.run_keras(Muon(0.01, adam_beta_2=0.99, **kwargs), problem)
    reference = rp.run_optax(optax.contrib.muon(0.01, adam_b2=0.99, **kwargs), problem)
    width = rp.run_optax(optax.contrib.muon(0.01, adam_b2=0.99, **{**kwargs, "consistent_rms": None}), problem)
    rp.assert_matches(ours, reference)
    rp.assert_differs(ours, width)


def test_exclude_layers_sends_a_kernel_to_adamw():
    problem = rp.quadratic(seed=3)
    ours = rp.run_keras(Muon(0.01, exclude_layers=["^kern"]), problem)
    labels = {"kernel": None, "bias": None}
    reference = rp.run_optax(optax.contrib.muon(0.01, muon_weight_dimension_numbers=labels), problem)
    muon_kernel = rp.run_keras(Muon(0.01), problem)
    rp.assert_matches(ours, reference)
    rp.assert_differs(ours, muon_kernel)


@pytest.mark.parametrize("kernel_shape", [(3, 3, 2, 4), (5, 2, 3), (2, 2, 2, 3, 2)])
def test_nd_kernels_match_optax_with_dimension_numbers(kernel_shape):
    problem = tr.ShapedQuadratic({"kernel": kernel_shape, "bias": (kernel_shape[-1],)}, seed=4)
    rank = len(kernel_shape)
    numbers = {
        "kernel": optax.contrib.MuonDimensionNumbers(reduction_axis=tuple(range(rank - 1)), output_axis=rank - 1),
        "bias": None,
    }
    ours = tr.run_keras_shaped(Muon(0.01, consistent_rms=0.2), problem)
    reference = tr.run_optax_shaped(
        optax.contrib.muon(0.01, consistent_rms=0.2, muon_weight_dimension_numbers=numbers), problem
    )
    assert np.abs(reference[-1] - problem.x0).max() > 1e-2
    rp.assert_matches(ours, reference)


def numpy_newton_schulz(matrix, steps=5, a=3.4445, b=-4.7750, c=2.0315):
    """Jordan's quintic iteration in float64 numpy, on the wide orientation."""
    x = matrix.astype(np.float64)
    tall = x.shape[0] > x.shape[1]
    x = x.T if tall else x
    x = x / (np.linalg.norm(x) + 1e-8)
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if tall else x


def test_newton_schulz_matches_a_transcription():
    rng = np.random.default_rng(0)
    for shape in [(6, 3), (3, 6), (4, 4)]:
        matrix = rng.normal(size=shape).astype("float32")
        ours = np.asarray(newton_schulz(matrix, 5, 1e-8))
        np.testing.assert_allclose(ours, numpy_newton_schulz(matrix), rtol=1e-4, atol=1e-5)
        singular_values = np.linalg.svd(ours, compute_uv=False)
        assert np.all((singular_values > 0.5) & (singular_values < 1.5))


def test_float16_variables_match_optax_in_float16():
    problem = tr.as_float16(rp.quadratic())
    ours = rp.run_keras(Muon(0.01), problem)
    reference = rp.run_optax(optax.contrib.muon(0.01), problem)
    assert ours.dtype == np.float16
    rp.assert_moved(reference.astype(np.float32), problem)
    rp.assert_matches(ours.astype(np.float32), reference.astype(np.float32), rtol=1e-2)


def test_which_variables_get_muon():
    import keras

    optimizer = Muon(exclude_layers=["head/"])
    conv = keras.Variable(np.zeros((3, 3, 2, 4)), name="kernel")
    embedding = keras.layers.Embedding(10, 4)
    embedding.build((None,))
    head = keras.layers.Dense(2, name="head")
    head.build((None, 4))
    assert optimizer.uses_muon(conv)
    assert not optimizer.uses_muon(keras.Variable(np.zeros((4,)), name="bias"))
    assert not optimizer.uses_muon(embedding.embeddings)
    assert Muon(exclude_embeddings=False).uses_muon(embedding.embeddings)
    assert not optimizer.uses_muon(head.kernel)


@pytest.mark.parametrize(
    "bad, error",
    [({"beta": 1.0}, ValueError), ({"ns_steps": 0}, ValueError), ({"consistent_rms": 0.0}, ValueError),
     ({"exclude_layers": "head"}, TypeError), ({"exclude_layers": ["("]}, ValueError),
     ({"adam_learning_rate": -0.1}, ValueError)],
)
def test_invalid_arguments(bad, error):
    with pytest.raises(error, match="Received:"):
        Muon(**bad)
