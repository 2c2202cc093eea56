"""Hyperparameters scheduled at run time (``control.schedule_hyperparameter``) in RAdam, Shampoo, AdEMAMix.

``HyperparameterScheduler`` promises that any float hyperparameter of our
optimizers may be scheduled: the attribute becomes a scalar variable that a
compiled step reads at every update. Each run below changes ``beta_1`` /
``beta_2`` / ``beta_3`` at every update inside one ``tf.function`` loop (traced
once, as ``model.fit`` does) and is compared over the whole trajectory with an
independent implementation that reads the new value at every step: optax's
``inject_hyperparams`` (schedules of its 0-based count, as
``optimizer.iterations``), the numpy Shampoo transcription of
``test_shampoo.py``, and pytorch-optimizer's ``AdEMAMix`` with its betas set
before every step. Before the fix RAdam and AdEMAMix froze the value taken
when the step was traced into ``math.log`` (silently wrong), and RAdam's
``beta_2`` and Shampoo's ``beta_2`` could not be traced at all.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_trainkit.optimizers import AdEMAMix, RAdam, Shampoo
from keras_trainkit.optimizers.control import schedule_hyperparameter
from tests.optimizers import reference_drivers as tr
from tests.optimizers import reference_problems as rp
from tests.optimizers.test_shampoo import NumpyShampoo, _problem

STEPS = 100


def run_scheduled(optimizer, problem, schedules, steps=STEPS):
    """``rp.run_keras`` with ``schedules[name](count)`` assigned to the scheduled ``name`` before each update."""
    variables = [keras.Variable(problem.init[k], name=k) for k in rp.NAMES]
    optimizer.build(variables)
    handles = {name: schedule_hyperparameter(optimizer, name) for name in schedules}
    tnp = tf.experimental.numpy

    @tf.function
    def run():
        rows = tf.TensorArray(problem.x0.dtype, size=steps)
        for i in tf.range(steps):
            count = tf.cast(optimizer.iterations, "float32")
            for name, handle in handles.items():
                handle.assign(schedules[name](count))
            params = rp.flatten({k: v.value for k, v in zip(rp.NAMES, variables)}, tnp)
            grads = rp.split(problem.grad(params, tnp), tnp)
            optimizer.apply([grads[k] for k in rp.NAMES], variables)
            rows = rows.write(i, rp.flatten({k: v.value for k, v in zip(rp.NAMES, variables)}, tnp))
        return rows.stack()

    return run().numpy()


RADAM_SCHEDULES = {"beta_1": lambda c: 0.9 - 0.2 * c / STEPS, "beta_2": lambda c: 0.999 - 0.05 * c / STEPS}


@pytest.mark.parametrize("names", [("beta_1",), ("beta_2",), ("beta_1", "beta_2")])
def test_radam_scheduled_betas_match_optax_inject_hyperparams(names):
    import jax
    import optax

    schedules = {name: RADAM_SCHEDULES[name] for name in names}
    ours = run_scheduled(RAdam(0.01), rp.quadratic(), schedules)
    injected = {{"beta_1": "b1", "beta_2": "b2"}[name]: schedule for name, schedule in schedules.items()}
    transform = optax.inject_hyperparams(optax.radam)(learning_rate=0.01, eps_root=0.0, threshold=5.0, **injected)
    with jax.enable_x64(True):
        reference = rp.run_optax(transform, rp.as_float64(rp.quadratic()))
    constant = rp.run_keras(RAdam(0.01), rp.quadratic())
    rp.assert_differs(constant, reference)
    rp.assert_matches(ours, reference, rtol=2e-6)


def _assert_shampoo_follows_the_beta_2_schedule(beta_2, beta_2_value, start):
    """60 steps of Shampoo whose ``beta_2`` is set before each step to ``beta_2(iterations)``
    (a traced function of a float64 tensor) match the numpy transcription run with
    ``beta_2_value(t)`` as float32 holds it, step by step."""
    arguments = dict(learning_rate=2.0**-7, beta_1=0.9, beta_2=start, epsilon=1e-4, max_block_size=3,
                     preconditioning_compute_steps=4, start_preconditioning_step=3, graft="adam",
                     graft_beta_2=0.99, graft_epsilon=1e-8)
    w0, b0, grads = _problem()
    w, b = keras.Variable(w0), keras.Variable(b0)
    optimizer = Shampoo(**arguments)
    optimizer.build([w, b])
    handle = schedule_hyperparameter(optimizer, "beta_2")

    @tf.function
    def step(gw, gb):
        handle.assign(tf.cast(beta_2(tf.cast(optimizer.iterations, "float64")), "float32"))
        optimizer.apply([gw, gb], [w, b])

    reference = NumpyShampoo(*(arguments[k] for k in (
        "learning_rate", "beta_1", "beta_2", "epsilon", "max_block_size", "preconditioning_compute_steps",
        "start_preconditioning_step", "graft", "graft_beta_2", "graft_epsilon")))
    rw, rb = w0.copy(), b0.copy()
    for t in range(60):
        gw, gb = grads(rw, rb)
        step(tf.constant(gw), tf.constant(gb))
        reference.beta_2 = float(np.float32(beta_2_value(t)))  # the value the float32 variable holds
        rw, rb = reference.step("w", rw, gw), reference.step("b", rb, gb)
        reference.t += 1
        np.testing.assert_allclose(w.numpy(), rw, rtol=0, atol=1e-9 * np.abs(rw).max(), err_msg=f"step {t}")
        np.testing.assert_allclose(b.numpy(), rb, rtol=0, atol=1e-9 * np.abs(rb).max(), err_msg=f"step {t}")
        w.assign(rw)
        b.assign(rb)


def test_shampoo_scheduled_beta_2_matches_the_numpy_transcription():
    def beta_2(count):
        return 0.99 - 0.3 * count / 60

    _assert_shampoo_follows_the_beta_2_schedule(beta_2, beta_2, start=0.99)


ADEMAMIX_SCHEDULES = {"beta_1": lambda c: 0.9 - 0.3 * c / STEPS, "beta_3": lambda c: 0.9995 - 0.02 * c / STEPS}


@pytest.mark.parametrize("name", ["beta_1", "beta_3"])
def test_ademamix_warmup_with_a_scheduled_beta_matches_pytorch_optimizer(name):
    from pytorch_optimizer import AdEMAMix as TorchAdEMAMix

    schedule = ADEMAMIX_SCHEDULES[name]
    position = {"beta_1": 0, "beta_3": 2}[name]

    class Scheduled(TorchAdEMAMix):
        count = 0

        def step(self, closure=None):
            betas = list(self.param_groups[0]["betas"])
            betas[position] = float(np.float32(schedule(self.count)))
            self.param_groups[0]["betas"] = tuple(betas)
            self.count += 1
            return super().step(closure)

    def make():
        return AdEMAMix(0.002, beta_3=0.9995, alpha=6.0, warmup_steps=80)

    ours = run_scheduled(make(), rp.rosenbrock(), {name: schedule})
    reference = tr.run_torch(
        lambda p: Scheduled(p, lr=0.002, betas=(0.9, 0.999, 0.9995), alpha=6.0, t_alpha_beta3=80, foreach=False),
        rp.rosenbrock(),
    )
    rp.assert_differs(rp.run_keras(make(), rp.rosenbrock()), reference)
    rp.assert_matches(ours, reference, rtol=2e-5)


@pytest.mark.parametrize("start, later", [(0.99, 1.0), (1.0, 0.95)])
def test_shampoo_beta_2_scheduled_across_one_switches_between_ema_and_sum(start, later):
    # beta_2 = 1 sums the statistics (L += G G^T); below 1 they are an EMA. A step traced
    # on one side used to keep that rule after the schedule crossed 1: from 0.99 to 1.0 the
    # statistics froze (weight 1 - 1 = 0), from 1.0 to 0.95 they kept summing.
    def beta_2(count):
        return tf.where(count < 30, tf.constant(start, "float64"), tf.constant(later, "float64"))

    _assert_shampoo_follows_the_beta_2_schedule(
        beta_2, lambda t: start if t < 30 else later, start=start)
