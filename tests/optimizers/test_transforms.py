"""Gradient transforms used standalone: formulas, statistics, state, config, argument checks."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_trainkit.optimizers import transforms
from keras_trainkit.optimizers.transforms import (
    AdaptiveGradientClipping,
    AutoClip,
    ClipByGlobalNorm,
    ClipByValue,
    GradientCentralization,
    GradientChain,
    GradientNoise,
    NonFiniteGradientError,
    SkipNonFinite,
    unitwise_norm,
)


def _vars(*arrays, names=None):
    names = names or [f"v{i}" for i in range(len(arrays))]
    return [keras.Variable(np.asarray(a, "float32"), name=n) for a, n in zip(arrays, names)]


def _np(tensors):
    return [None if t is None else np.asarray(t) for t in tensors]


def test_gradient_noise_variance_follows_annealing_schedule():
    """Statistical check of sigma_t^2 = eta / (1 + t)^gamma over 100 steps (as optax.add_noise)."""
    eta, gamma, n = 0.3, 0.55, 4000
    noise = GradientNoise(eta, gamma, seed=7)
    variables = _vars(np.zeros((80, 50)), np.zeros(50))
    zeros = [tf.zeros((80, 50)), tf.zeros(50)]
    step = tf.function(lambda: noise(zeros, variables), jit_compile=True)
    ratios = []
    for t in range(100):
        out = np.concatenate([x.ravel() for x in _np(step())])
        expected = eta / (1.0 + t) ** gamma
        assert out.size == n + 50
        # Mean within 5 standard errors, variance within 5 of its standard errors (sqrt(2/n)).
        assert abs(out.mean()) < 5 * np.sqrt(expected / out.size)
        assert abs(out.var() / expected - 1) < 5 * np.sqrt(2 / out.size)
        ratios.append(out.var() / expected)
        np.testing.assert_allclose(noise.get_statistics()["noise_std"], np.sqrt(expected), rtol=1e-6)
    assert abs(np.mean(ratios) - 1) < 0.01
    assert int(noise.step) == 100


def test_gradient_noise_is_seeded_and_independent_of_gradient():
    g = [tf.constant([[1.0, 2.0], [3.0, 4.0]])]
    first, second = GradientNoise(0.1, seed=3), GradientNoise(0.1, seed=3)
    w = _vars(np.zeros((2, 2)))
    a, b = _np(first(g, w)), _np(second(g, w))
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.allclose(_np(first(g, w))[0], a[0])  # the generator state advances


def test_unitwise_norm_axes_and_agc_formula():
    rng = np.random.default_rng(0)
    for shape in [(3,), (4, 3), (2, 4, 3), (2, 2, 3, 5)]:
        x = rng.normal(size=shape).astype("float32")
        axes = tuple(range(len(shape) - 1)) if len(shape) > 1 else None
        np.testing.assert_allclose(
            np.asarray(unitwise_norm(x)), np.sqrt(np.sum(x**2, axis=axes, keepdims=True)), rtol=1e-6
        )
    # Formula by hand on a rank-3 kernel (optax's default differs there: axis 0 only).
    w = rng.normal(size=(2, 4, 3)).astype("float32")
    g = (rng.normal(size=(2, 4, 3)) * np.array([0.01, 1.0, 10.0])).astype("float32")
    agc = AdaptiveGradientClipping(0.1, eps=1e-3)
    [out] = _np(agc([tf.constant(g)], _vars(w)))
    w_norm = np.sqrt((w**2).sum(axis=(0, 1), keepdims=True))
    g_norm = np.sqrt((g**2).sum(axis=(0, 1), keepdims=True))
    max_norm = 0.1 * np.maximum(w_norm, 1e-3)
    expected = np.where(g_norm > max_norm, g * max_norm / np.maximum(g_norm, 1e-6), g)
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    assert agc.get_statistics()["clip_fraction"] == pytest.approx(np.mean(g_norm > max_norm))


def test_agc_eps_keeps_zero_weights_trainable_and_exclude_skips():
    zeros = _vars(np.zeros(3), np.zeros((2, 2)), names=["bias", "logits_kernel"])
    grads = [tf.constant([3.0, 0.0, 4.0]), tf.constant([[5.0, 5.0], [5.0, 5.0]])]
    agc = AdaptiveGradientClipping(0.5, eps=0.2, exclude=["logits"])
    bias, kernel = _np(agc(grads, zeros))
    np.testing.assert_allclose(bias, np.array([3.0, 0.0, 4.0]) * (0.5 * 0.2) / 5.0, rtol=1e-6)
    np.testing.assert_array_equal(kernel, np.full((2, 2), 5.0))
    assert agc.is_excluded(zeros[1]) and not agc.is_excluded(zeros[0])
    with pytest.raises(ValueError, match="Received: variables=None"):
        AdaptiveGradientClipping()(grads)


def test_clip_statistics_and_none_gradients():
    w = _vars(np.zeros(2), np.zeros(3))
    clip = ClipByGlobalNorm(1.0)
    out = clip([tf.constant([3.0, 4.0]), None], w)
    assert out[1] is None
    np.testing.assert_allclose(_np(out)[0], [0.6, 0.8], rtol=1e-6)
    assert clip.get_statistics() == {"grad_norm": pytest.approx(5.0), "clip_fraction": 1.0}
    clip([tf.constant([0.3, 0.4]), None], w)
    assert clip.get_statistics() == {"grad_norm": pytest.approx(0.5), "clip_fraction": 0.0}
    value = ClipByValue(1.0)
    [a, b] = _np(value([tf.constant([-3.0, 0.5]), tf.constant([2.0, 0.0, 1.0])], w))
    np.testing.assert_array_equal(a, [-1.0, 0.5])
    np.testing.assert_array_equal(b, [1.0, 0.0, 1.0])
    assert value.get_statistics()["clip_fraction"] == pytest.approx(2 / 5)


def test_autoclip_ring_buffer_is_bounded():
    clip = AutoClip(50.0, history_size=4)
    w = _vars(np.zeros(1))
    for norm in [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]:
        clip([tf.constant([norm])], w)
    assert clip.history.shape == (4,)
    np.testing.assert_allclose(sorted(np.asarray(clip.history)), [3.0, 4.0, 5.0, 6.0])
    assert clip.get_statistics()["threshold"] == pytest.approx(np.percentile([3, 4, 5, 6], 50))
    # A non-finite norm is not recorded.
    out = clip([tf.constant([np.nan])], w)
    assert int(clip.count) == 6 and np.isnan(_np(out)[0]).all()


def test_centralization_only_for_kernels():
    g = np.arange(12, dtype="float32").reshape(4, 3)
    w = _vars(np.zeros((4, 3)), np.zeros(3))
    kernel, bias = _np(GradientCentralization()([tf.constant(g), tf.constant([1.0, 2.0, 3.0])], w))
    np.testing.assert_allclose(kernel, g - g.mean(axis=0, keepdims=True))
    np.testing.assert_array_equal(bias, [1.0, 2.0, 3.0])
    np.testing.assert_allclose(kernel.sum(axis=0), 0.0, atol=1e-6)


def _step_through_chain(skip, grads, w):
    """One step of ``GradientChain([skip])`` on ``grads``; returns whether the update ran."""
    ran = []
    GradientChain([skip]).apply(grads, w, lambda g: ran.append([np.array(t) for t in g]))
    return bool(ran), ran


def test_skip_non_finite_in_a_chain_counts_and_raises():
    skip = SkipNonFinite(max_consecutive=2)
    w = _vars(np.zeros(2))
    good, bad = [tf.constant([1.0, 2.0])], [tf.constant([1.0, np.inf])]
    applied, seen = _step_through_chain(skip, good, w)
    assert applied
    np.testing.assert_array_equal(seen[0][0], [1.0, 2.0])
    assert not _step_through_chain(skip, bad, w)[0]
    np.testing.assert_array_equal(_np(skip(bad, w))[0], [0.0, 0.0])
    np.testing.assert_array_equal(_np(skip(good, w))[0], [1.0, 2.0])
    assert skip.get_statistics() == {"skipped_steps": 1.0, "consecutive_skips": 1.0}
    skip.raise_if_exhausted()
    with pytest.raises(NonFiniteGradientError, match="2 consecutive"):
        _step_through_chain(skip, bad, w)
    with pytest.raises(NonFiniteGradientError, match="max_consecutive=2"):
        skip.raise_if_exhausted()
    # Stopped: even a finite gradient is skipped (and raises again) until reset().
    with pytest.raises(NonFiniteGradientError, match="2 consecutive"):
        _step_through_chain(skip, good, w)
    assert skip.is_stopped() and skip.get_statistics()["skipped_steps"] == 3.0
    skip.reset()
    assert _step_through_chain(skip, good, w)[0] and skip.get_statistics()["consecutive_skips"] == 0.0
    assert not skip.is_stopped()


def test_custom_loop_under_xla():
    """The protocol a custom loop uses: one GradientChain, applied inside XLA."""
    w = keras.Variable(np.ones(3, "float32"), name="w")
    chain = GradientChain([SkipNonFinite(None), ClipByGlobalNorm(1.0)])
    opt = keras.optimizers.SGD(0.5)
    opt.build([w])
    chain.build([w])

    @tf.function(jit_compile=True)
    def step(g):
        chain.apply([g], [w], lambda grads: opt.apply(grads, [w]))

    step(tf.constant([3.0, 0.0, 4.0]))
    np.testing.assert_allclose(np.asarray(w), [1 - 0.3, 1.0, 1 - 0.4], rtol=1e-6)
    step(tf.constant([np.nan, 0.0, 0.0]))
    np.testing.assert_allclose(np.asarray(w), [0.7, 1.0, 0.6], rtol=1e-6)
    assert int(opt.iterations) == 1 and chain.transforms[0].get_statistics()["skipped_steps"] == 1.0


ALL = [
    (ClipByGlobalNorm, {"max_norm": 2.0}),
    (ClipByValue, {"clip_value": 0.5}),
    (AdaptiveGradientClipping, {"clipping": 0.02, "eps": 1e-4, "exclude": ["out"]}),
    (AutoClip, {"percentile": 5.0, "history_size": 10}),
    (SkipNonFinite, {"max_consecutive": 3}),
    (GradientNoise, {"eta": 0.3, "gamma": 0.5, "seed": 1}),
    (GradientCentralization, {"exclude": ["embedding"]}),
]


@pytest.mark.parametrize("cls, kwargs", ALL)
def test_config_round_trip_and_get(cls, kwargs):
    t = cls(name="custom", **kwargs)
    config = t.get_config()
    assert config == {"name": "custom", **kwargs}
    again = cls.from_config(config)
    assert again.get_config() == config
    assert type(transforms.get(cls.__name__)) is cls
    assert transforms.get({"class_name": cls.__name__, "config": config}).get_config() == config
    assert type(keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(t))) is cls


def test_get_aliases_and_errors():
    assert isinstance(transforms.get("agc"), AdaptiveGradientClipping)
    assert isinstance(transforms.get("clip_by_global_norm", max_norm=3.0), ClipByGlobalNorm)
    with pytest.raises(ValueError, match="Received: identifier='nope'"):
        transforms.get("nope")


@pytest.mark.parametrize(
    "cls, kwargs, match",
    [
        (ClipByGlobalNorm, {"max_norm": 0.0}, "Received: max_norm=0.0"),
        (ClipByGlobalNorm, {"max_norm": -1.0}, "Received: max_norm=-1.0"),
        (ClipByValue, {"clip_value": -0.5}, "Received: clip_value=-0.5"),
        (AdaptiveGradientClipping, {"clipping": 0.0}, "Received: clipping=0.0"),
        (AdaptiveGradientClipping, {"eps": -1e-3}, "Received: eps=-0.001"),
        (AdaptiveGradientClipping, {"exclude": ["("]}, "Received: exclude="),
        (AutoClip, {"percentile": 101.0}, "Received: percentile=101.0"),
        (AutoClip, {"history_size": 0}, "Received: history_size=0"),
        (SkipNonFinite, {"max_consecutive": 0}, "Received: max_consecutive=0"),
        (GradientNoise, {"eta": -0.1}, "Received: eta=-0.1"),
        (GradientNoise, {"gamma": float("nan")}, "Received: gamma=nan"),
        (GradientNoise, {"seed": -1}, "Received: seed=-1"),
        (GradientCentralization, {"name": ""}, "Received: name=''"),
    ],
)
def test_bad_arguments_raise_value_error(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)


def test_wrong_types_raise_type_error():
    with pytest.raises(TypeError, match="Received: max_norm='1'"):
        ClipByGlobalNorm("1")
    with pytest.raises(TypeError, match="Received: exclude=3"):
        AdaptiveGradientClipping(exclude=3)
    with pytest.raises(TypeError, match="`allow_callables` must be of type bool.*Received: "
                                        "allow_callables='yes'"):
        GradientChain([ClipByGlobalNorm(1.0)], allow_callables="yes")


def test_autoclip_non_finite_norm_is_not_recorded_and_spreads_as_documented():
    """A norm that overflows float32 (finite entries of 1e20) is not recorded, and every
    gradient becomes non-finite (the documented rule, as in ClipByGlobalNorm), never a
    silent zero and never the unclipped 1e20."""
    clip = transforms.AutoClip(50.0)
    variables = [keras.Variable(np.zeros(2, "float32"))]
    clip.build(variables)
    clip.call([tf.constant([3.0, 4.0])], variables)  # history [5]
    out = clip.call([tf.constant([1e20, 1.0])], variables)[0].numpy()
    assert not np.isfinite(out).any()
    assert int(clip.count.numpy()) == 1  # the overflowing norm is not in the history
    np.testing.assert_allclose(clip.call([tf.constant([6.0, 8.0])], variables)[0].numpy(),
                               [6.0 * 7.5 / 10.0, 8.0 * 7.5 / 10.0], rtol=1e-6)  # median of [5, 10]
