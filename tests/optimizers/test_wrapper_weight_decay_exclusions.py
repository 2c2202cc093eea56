"""Wrappers' weight-decay exclusions and nestings, against independent references.

* ``Cautious.exclude_from_weight_decay`` (Keras's method) must exclude from
  the wrapper's own unmasked decay, not only from the inner optimizer's
  (which has none in the paper's setup): reference, a numpy transcription of
  cautious SGD (mask ``u * g > 0``, rescaled by ``numel / (kept + 1)``, then
  ``w <- w - lr * wd * w`` for decayed variables only). Its patterns are
  searched in the variable's name too, as Keras's are (``"^bias$"``).
* ``LARS``: a variable excluded from weight decay through Keras's method is
  also stepped without the trust ratio, as the constructor argument does:
  reference, ``optax.lars`` with the same ``weight_decay_mask`` and
  ``trust_ratio_mask`` (epsilon 0, added to the update norm), 100 steps.
* ``Lookahead`` inside ``LayerwiseLearningRate`` or ``Cautious`` is refused:
  its synchronization is a reset of the weights that the outer wrapper would
  scale or mask as a step (the weights then leave Lookahead's slow weights).
"""

import keras
import numpy as np
import pytest

from keras_trainkit.optimizers import LARS, Cautious, LayerwiseLearningRate, Lookahead


def _cautious_sgd_reference(grads, lr, wd, decayed):
    """Cautious SGD over ``grads`` (a list of {name: g}) from ones, decay ``decayed`` names only."""
    params = {name: np.ones(3) for name in grads[0]}
    for step in grads:
        for name, g in step.items():
            u = lr * g
            keep = (u * g > 0).astype(np.float64)
            w = params[name] - u * keep * (keep.size / (keep.sum() + 1.0))
            params[name] = w - lr * wd * w if name in decayed else w
    return params


@pytest.mark.parametrize("how", ["var_names", "var_list"])
def test_cautious_exclude_method_reaches_the_wrappers_own_decay(how):
    rng = np.random.default_rng(0)
    grads = [{"kernel": rng.normal(size=3), "bias": rng.normal(size=3)} for _ in range(20)]
    kernel = keras.Variable(np.ones(3, "float32"), name="kernel")
    bias = keras.Variable(np.ones(3, "float32"), name="bias")
    opt = Cautious(keras.optimizers.SGD(0.1), weight_decay=0.5)
    if how == "var_names":
        opt.exclude_from_weight_decay(var_names=["bias"])
    else:
        opt.exclude_from_weight_decay(var_list=[bias])
    for step in grads:
        opt.apply([step["kernel"].astype("float32"), step["bias"].astype("float32")], [kernel, bias])
    expected = _cautious_sgd_reference(grads, 0.1, 0.5, decayed={"kernel"})
    np.testing.assert_allclose(kernel.numpy(), expected["kernel"], rtol=1e-5)
    np.testing.assert_allclose(bias.numpy(), expected["bias"], rtol=1e-5)


def test_cautious_exclude_method_names_its_argument():
    opt = Cautious(keras.optimizers.SGD(0.1), weight_decay=0.5)
    with pytest.raises(TypeError, match=r"var_names.*Received: var_names='bias'"):
        opt.exclude_from_weight_decay(var_names="bias")


def test_lars_exclude_method_also_skips_the_trust_ratio_like_optax():
    optax = pytest.importorskip("optax")
    jnp = pytest.importorskip("jax.numpy")
    rng = np.random.default_rng(2)
    grads = rng.normal(size=(100, 2, 4)).astype("float32")
    start = {"kernel": np.full(4, 0.7, "float32"), "bias": np.full(4, -0.4, "float32")}
    kernel = keras.Variable(start["kernel"], name="kernel")
    bias = keras.Variable(start["bias"], name="bias")
    opt = LARS(0.05, momentum=0.9, weight_decay=0.01)
    opt.exclude_from_weight_decay(var_names=["bias"])
    for g in grads:
        opt.apply([g[0], g[1]], [kernel, bias])

    mask = {"kernel": True, "bias": False}
    tx = optax.lars(0.05, weight_decay=0.01, weight_decay_mask=mask, trust_ratio_mask=mask,
                    trust_coefficient=0.001, eps=0.0, momentum=0.9)
    params = {k: jnp.asarray(v) for k, v in start.items()}
    state = tx.init(params)
    for g in grads:
        updates, state = tx.update({"kernel": jnp.asarray(g[0]), "bias": jnp.asarray(g[1])}, state, params)
        params = optax.apply_updates(params, updates)
    np.testing.assert_allclose(kernel.numpy(), np.asarray(params["kernel"]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bias.numpy(), np.asarray(params["bias"]), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("make", [
    lambda inner: LayerwiseLearningRate(inner, {"*": 0.5}),
    lambda inner: Cautious(inner),
    lambda inner: Cautious(LayerwiseLearningRate(inner)),
])
def test_a_lookahead_inside_a_wrapper_rewriting_the_step_is_refused(make):
    with pytest.raises(ValueError, match=r"must not be or wrap a Lookahead.*Put it outside: Lookahead\("):
        make(Lookahead(keras.optimizers.SGD(0.1), sync_period=2))


def test_lookahead_outside_layerwise_is_lookahead_with_the_scaled_rate():
    """The nesting the refusal points to: numpy Lookahead(SGD(lr * f)) (Zhang et al. 2019)."""
    rng = np.random.default_rng(1)
    grads = rng.normal(size=(100, 3)).astype("float32")
    w = keras.Variable(np.ones(3, "float32"), name="kernel")
    opt = Lookahead(LayerwiseLearningRate(keras.optimizers.SGD(0.1), {"*": 0.5}), sync_period=2)
    fast = np.ones(3)
    slow = fast.copy()
    for t, g in enumerate(grads, 1):
        opt.apply([g], [w])
        fast = fast - 0.05 * g
        if t % 2 == 0:
            slow = slow + 0.5 * (fast - slow)
            fast = slow.copy()
    np.testing.assert_allclose(w.numpy(), fast, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("how", ["argument", "method"])
def test_cautious_anchored_exclusion_matches_the_variable_name_as_keras_does(how):
    """``"^bias$"`` excludes a Dense bias (name ``bias``, path ``.../bias``), as Keras's method does.

    Reference: one cautious SGD step by hand, all entries agreeing (kept 2 of 2,
    scale 2 / 3): ``1 - 0.1 * 2 / 3`` for the bias, undecayed.
    """
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="d")])
    kernel, bias = model.trainable_variables
    model.set_weights([np.ones((3, 2), "float32"), np.ones(2, "float32")])
    if how == "argument":
        opt = Cautious(keras.optimizers.SGD(0.1), weight_decay=0.5, exclude_from_weight_decay=["^bias$"])
    else:
        opt = Cautious(keras.optimizers.SGD(0.1), weight_decay=0.5)
        opt.exclude_from_weight_decay(var_names=["^bias$"])
    opt.apply([np.ones((3, 2), "float32"), np.ones(2, "float32")], [kernel, bias])
    np.testing.assert_allclose(bias.numpy(), 1 - 0.1 * 2 / 3, rtol=1e-6)
    step = 1 - 0.1 * 6 / 7
    np.testing.assert_allclose(kernel.numpy(), step - 0.1 * 0.5 * step, rtol=1e-6)
