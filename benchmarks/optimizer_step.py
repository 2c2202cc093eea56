"""Time one optimizer step of every keras_trainkit optimizer, wrapper and transform against Adam.

``--backend {tensorflow,jax,torch}`` times on that Keras backend (the script
re-runs itself with ``KERAS_BACKEND`` set) and every ratio is to that
backend's own ``keras.optimizers.Adam``. The step per backend
(``_backend_steps.py``): TensorFlow, one ``tf.function`` (XLA only with
``--jit``); JAX, ``stateless_call`` + ``stateless_apply`` in a
``jax.lax.fori_loop`` under ``jax.jit`` (always: ``jit_compile=True`` is
``model.fit``'s default there); PyTorch, an eager loop (``fit``'s default).
The TensorFlow description follows.

What is timed: a compiled train step (``tf.function``; XLA only with ``--jit``)
on an MLP 784-512-512-10 (ReLU, softmax cross-entropy, about 670k weights; other
widths with ``--hidden``) and one fixed random batch of 128 (``--batch``) held in memory: forward pass, backward pass and
``optimizer.apply_gradients``. ``SAM`` runs its real two passes through
``SAM.compute_gradients`` (the hook the ``Trainer`` and ``SAMModel`` use). One
timed call runs ``--steps`` steps inside the compiled function (a
``tf.while_loop``) and ends by reading the last loss back to the host (a device
sync), so Python, ``model.fit`` and data-pipeline overheads are not in the
figures. Each candidate is compiled and run once before timing (tracing,
compilation and slot creation excluded).

All candidates live in ONE process and are timed round-robin: each repeat runs
every candidate once, in an order rotated from repeat to repeat, and each
candidate's run comes right after a run of Adam (and, for a transform, of the
optimizer it wraps), so every ratio compares runs taken back to back and the
drift of a busy machine's load cancels out. Reported per candidate: the median
ms/step over repeats, and the medians over repeats of the ratios to
``keras.optimizers.Adam`` ("x Adam") and to the optimizer it wraps ("x wrapped"):

* wrappers (``OptimizerWrapper``, ``Lookahead``, ``SAM``,
  ``LayerwiseLearningRate``, ``TransformedOptimizer`` with no transform) wrap
  ``keras.optimizers.Adam``;
* each gradient transform runs as ``TransformedOptimizer(Adam, [transform])``
  and is compared with ``TransformedOptimizer(Adam, [])`` (its own cost) as
  well as with Adam.

Targets (issue 3): element-wise optimizers <= 1.3x Adam; a transform or
Lookahead <= 1.10x what it wraps (AutoClip, AdaptiveGradientClipping <= 1.15x);
SAM <= 2.1x Adam; Shampoo (second order, refresh every 10 steps) <= 3x Adam.
Issue 19: ADOPT, AdEMAMix, MARS, Cautious(Adam) <= 1.3x Adam; Muon <= 2x Adam;
SOAP's ratio to Adam no larger than pytorch-optimizer's SOAP to torch's AdamW.

The SOAP comparison runs in the same process and round-robin: the same MLP in
PyTorch (``torch.nn.Linear`` layers, the same kernel shapes transposed), one
step = forward, backward, ``optimizer.step()`` in eager PyTorch, ``--steps``
steps per timed call. ``torch.AdamW`` is timed right before
``pytorch_optimizer.SOAP`` (its defaults: no blocking below 10000, refresh
every 10 steps), so "x wrapped" of the PyTorch SOAP row is its ratio to AdamW
and the target of our SOAP rows. Our ``SOAP (block 1024)`` leaves these
kernels whole, the same algorithm as pytorch-optimizer's; the default blocks
of 256 cut the 784 x 512 kernels into 4 x 2 blocks. Skipped (with a line
saying so) when torch or pytorch-optimizer is not installed.

Candidates are read from the registries, so classes added later are timed too;
what cannot be built with default arguments is reported as skipped.

Usage::

    python benchmarks/optimizer_step.py                        # 20 steps x 7 repeats
    python benchmarks/optimizer_step.py --steps 50 --repeats 9
    python benchmarks/optimizer_step.py --only Shampoo SAM --jit   # adds Shampoo(newton)
    python benchmarks/optimizer_step.py --cpu-time   # busy machine: 1 thread, CPU clock
    python benchmarks/optimizer_step.py --backend jax --cpu-time --steps 10 --repeats 3
    python benchmarks/optimizer_step.py --backend jax --hidden 2048 --batch 1024   # on a GPU

On a GPU (JAX or PyTorch backend) the PyTorch SOAP comparison runs on the same GPU, and
the header names the device.

``--cpu-time`` runs the backend on one thread (TensorFlow's thread pools,
``torch.set_num_threads(1)``, XLA's CPU runtime on JAX) and reads the process CPU clock:
figures that other processes on a shared machine barely disturb (a proxy for
the quiet-machine ratios, not the multi-threaded wall time).
"""

from __future__ import annotations

import argparse
import inspect
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
BACKENDS = ("tensorflow", "jax", "torch")


def _select_backend(argv):
    """Re-execute this script with ``KERAS_BACKEND`` set when ``--backend`` asks for another.

    Keras reads the backend once, at import, so the choice must come before it.
    With ``--cpu-time`` on JAX, XLA's CPU runtime gets one thread as well, and so does
    OpenBLAS (jaxlib's CPU ``eigh`` and ``qr`` call scipy's LAPACK, whose idle OpenBLAS
    threads spin and would be counted by the process CPU clock: Shampoo and SOAP read
    about 3x and 5x slower with them).
    """
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--backend", choices=BACKENDS)
    pre.add_argument("--cpu-time", action="store_true")
    known, _ = pre.parse_known_args(argv)
    if known.backend is None:
        return
    wanted = {"KERAS_BACKEND": known.backend}
    if known.cpu_time and known.backend == "jax":
        wanted["OPENBLAS_NUM_THREADS"] = "1"
        flags = os.environ.get("XLA_FLAGS", "")
        for flag in ("--xla_cpu_multi_thread_eigen=false", "intra_op_parallelism_threads=1"):
            if flag not in flags.split():
                flags = f"{flags} {flag}".strip()
        wanted["XLA_FLAGS"] = flags
    if all(os.environ.get(name) == value for name, value in wanted.items()):
        return
    os.execve(sys.executable, [sys.executable, os.path.abspath(__file__), *argv], {**os.environ, **wanted})


if __name__ == "__main__":
    _select_backend(sys.argv[1:])

import keras  # noqa: E402  (after the backend is chosen)
import numpy as np  # noqa: E402

from _backend_steps import build_step  # noqa: E402  (benchmarks/ is the script's folder)

BASELINE = "keras.Adam"
EMPTY_CHAIN = "TransformedOptimizer(Adam, [])"
# label -> (target ratio, "adam" or "wrapped": which ratio the target applies to)
ELEMENTWISE_TARGET = (1.3, "adam")
WRAPPER_TARGET = (1.10, "wrapped")
TARGETS = {
    "Lookahead(Adam)": (1.10, "wrapped"),
    "SAM(Adam)": (2.1, "adam"),
    "AutoClip": (1.15, "wrapped"),
    "AdaptiveGradientClipping": (1.15, "wrapped"),
    "Cautious(Adam)": (1.3, "adam"),
}
SHAMPOO_TARGET = (3.0, "adam")
MUON_TARGET = (2.0, "adam")
TORCH_ADAMW = "torch.AdamW"
TORCH_SOAP = "pytorch-optimizer SOAP"
# Our SOAP rows: ratio to Adam at most the PyTorch SOAP row's ratio to torch.AdamW.
SOAP_TARGET = (TORCH_SOAP, "adam")
CLOCK = time.perf_counter  # --cpu-time: time.process_time
HIDDEN = 512  # --hidden: the width of both hidden layers


def _mlp():
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((784,)),
            keras.layers.Dense(HIDDEN, activation="relu", name="dense1"),
            keras.layers.Dense(HIDDEN, activation="relu", name="dense2"),
            keras.layers.Dense(10, name="logits"),
        ]
    )


def _torch_device():
    """The PyTorch side runs where the Keras side does: the GPU when there is one."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class Candidate:
    """One optimizer on its own copy of the MLP, with a compiled ``steps``-step function."""

    def __init__(self, label, make, wraps=None, target=None, sam=False):
        self.label, self.make, self.wraps, self.target, self.sam = label, make, wraps, target, sam
        self.times = []

    def compile(self, x, y, jit):
        self.model, self.optimizer = _mlp(), self.make()
        self._run = build_step(self.model, self.optimizer, x, y, self.sam, jit)
        self.run(2)  # trace, compile and create every slot; not timed

    def run(self, steps):
        """Seconds per step of ``steps`` steps in one call, synced by reading the loss."""
        start = CLOCK()
        loss = self._run(steps)
        elapsed = CLOCK() - start
        if not np.isfinite(loss):
            raise FloatingPointError(f"{self.label}: non-finite loss {loss}")
        return elapsed / steps


class TorchCandidate(Candidate):
    """The same MLP and batch in eager PyTorch: forward, backward, ``optimizer.step()``."""

    def compile(self, x, y, jit):
        import torch

        torch.manual_seed(0)
        device = _torch_device()
        self.model = torch.nn.Sequential(
            torch.nn.Linear(784, HIDDEN), torch.nn.ReLU(), torch.nn.Linear(HIDDEN, HIDDEN), torch.nn.ReLU(),
            torch.nn.Linear(HIDDEN, 10),
        ).to(device)
        self.optimizer = self.make(self.model.parameters())
        self._x = torch.from_numpy(x).to(device)
        self._y = torch.from_numpy(y.astype("int64")).to(device)
        self._loss = torch.nn.CrossEntropyLoss()
        self.run(2)  # create the optimizer state (and SOAP's first eigendecompositions); not timed

    def run(self, steps):
        start = CLOCK()
        for _ in range(steps):
            self.optimizer.zero_grad(set_to_none=True)
            loss = self._loss(self.model(self._x), self._y)
            loss.backward()
            self.optimizer.step()
        value = float(loss.detach())
        elapsed = CLOCK() - start
        if not np.isfinite(value):
            raise FloatingPointError(f"{self.label}: non-finite loss {value}")
        return elapsed / steps


def torch_candidates():
    """``(torch.AdamW, pytorch-optimizer SOAP)`` at their defaults, or ``[]`` without them."""
    try:
        import pytorch_optimizer
        import torch
    except ImportError:
        return []
    return [
        TorchCandidate(TORCH_ADAMW, lambda params: torch.optim.AdamW(params, lr=1e-3)),
        TorchCandidate(TORCH_SOAP, lambda params: pytorch_optimizer.SOAP(params), wraps=TORCH_ADAMW),
    ]


def candidates(jit=False, soap_blocks=(1024,)):
    """``(list of Candidate, list of skipped names)`` read from the registries.

    ``soap_blocks``: the ``max_block_size`` of SOAP's rows besides its defaults.
    """
    adam = lambda: keras.optimizers.Adam(1e-3)
    out = [Candidate(BASELINE, adam)]
    skipped = []
    try:
        import keras_trainkit.optimizers as kto
    except Exception as error:  # noqa: BLE001 - report, do not crash the benchmark
        return out, [f"keras_trainkit.optimizers ({error})"]
    classes = kto.REGISTRY.classes
    wrapper_base = classes.get("OptimizerWrapper")

    for name, cls in sorted(classes.items()):
        if wrapper_base is not None and issubclass(cls, wrapper_base):
            continue
        if name == "Shampoo":
            default_block = inspect.signature(cls).parameters["max_block_size"].default
            other_block = 64 if default_block == 128 else 128
            out.append(Candidate(f"Shampoo (defaults, block {default_block})", cls, target=SHAMPOO_TARGET))
            out.append(Candidate(
                f"Shampoo (block {other_block})", lambda cls=cls, b=other_block: cls(max_block_size=b)
            ))
            if jit:  # the coupled Newton iteration is the XLA variant; without XLA eigh is faster
                out.append(Candidate(
                    "Shampoo (newton)", lambda cls=cls: cls(inverse_root="newton")
                ))
            continue
        if name == "Muon":
            out.append(Candidate("Muon (defaults)", cls, target=MUON_TARGET))
            if hasattr(keras.optimizers, "Muon"):  # Keras's own: the same Newton-Schulz work on 2-D kernels
                out.append(Candidate("keras.Muon", lambda: keras.optimizers.Muon(0.02)))
            continue
        if name == "SOAP":
            default_block = inspect.signature(cls).parameters["max_block_size"].default
            out.append(Candidate(f"SOAP (defaults, block {default_block})", cls, target=SOAP_TARGET))
            for block in soap_blocks:
                if block != default_block:
                    out.append(Candidate(f"SOAP (block {block})", lambda cls=cls, b=block: cls(max_block_size=b),
                                         target=SOAP_TARGET))
            continue
        out.append(Candidate(name, cls, target=ELEMENTWISE_TARGET))

    wrappers = {
        "OptimizerWrapper": (lambda c: c(adam()), False),
        "Lookahead": (lambda c: c(adam()), False),
        "LayerwiseLearningRate": (lambda c: c(adam(), {"dense1/*": 0.5, "dense2/*": 0.75}), False),
        "SAM": (lambda c: c(adam(), rho=0.05), True),
        "Cautious": (lambda c: c(adam()), False),
    }
    for name, (make, sam) in wrappers.items():
        if name not in classes:
            skipped.append(name)
            continue
        label = f"{name}(Adam)"
        target = TARGETS.get(label, WRAPPER_TARGET)
        out.append(Candidate(label, lambda make=make, c=classes[name]: make(c), wraps=BASELINE, target=target, sam=sam))

    torch_side = torch_candidates()
    if torch_side:
        out.extend(torch_side)
    else:
        skipped.append("PyTorch SOAP comparison (torch or pytorch-optimizer not installed)")

    transformed = classes.get("TransformedOptimizer")
    transforms = getattr(kto, "transforms", None)
    if transformed is None or transforms is None:
        skipped.append("TransformedOptimizer / transforms")
        return out, skipped
    out.append(Candidate(EMPTY_CHAIN, lambda: transformed(adam(), []), wraps=BASELINE, target=WRAPPER_TARGET))
    for name, tcls in sorted(transforms.REGISTRY.classes.items()):
        out.append(Candidate(
            f"{name}(Adam)",
            lambda tcls=tcls: transformed(adam(), [tcls()]),
            wraps=EMPTY_CHAIN,
            target=TARGETS.get(name, WRAPPER_TARGET),
        ))
    return out, skipped


def verdict(candidate, to_adam, to_wrapped, wrapped_ratio_of) -> str:
    """The target column: ``"<= 1.30x Adam: ok"``, ``"... OVER"`` or ``""`` without a target.

    A target given as a row label (our SOAP rows) is that row's "x wrapped"
    ratio (the PyTorch SOAP's ratio to torch.AdamW), read via ``wrapped_ratio_of``.
    """
    if candidate.target is None:
        return ""
    limit, against = candidate.target
    if isinstance(limit, str):
        label, limit = limit, wrapped_ratio_of(limit)
        if limit is None:
            return f"(no {label} row to compare with)"
    value = to_adam if against == "adam" else to_wrapped
    result = "ok" if value is not None and value <= limit else "OVER"
    return f"<= {limit:.2f}x {'Adam' if against == 'adam' else 'wrapped'}: {result}"


def _one_thread():
    """One compute thread for the backend in use (and for the PyTorch SOAP comparison)."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        tf.get_logger().setLevel("ERROR")  # one tf.function per candidate is intended, not retracing
    try:
        import torch

        torch.set_num_threads(1)
        torch.set_num_interop_threads(1)
    except ImportError:
        pass


def _description(args) -> str:
    """The header: what is timed, on which backend and versions."""
    backend = keras.backend.backend()
    how = {"tensorflow": f"tf.function (jit_compile={args.jit})", "jax": "jax.jit (jit_compile=True)",
           "torch": "eager PyTorch (jit_compile=False, fit's default)"}[backend]
    module = __import__({"torch": "torch"}.get(backend, backend))
    return (f"MLP 784-{HIDDEN}-{HIDDEN}-10, batch {args.batch}, forward+backward+apply_gradients in {how}, "
            f"{args.steps} steps per call x {args.repeats} round-robin repeats, medians; "
            f"clock: {'process CPU time, 1 thread' if args.cpu_time else 'wall'}\n"
            f"keras {keras.__version__}, backend {backend} {module.__version__}, device: {_device_name()}")


def _device_name() -> str:
    """The device the Keras backend computes on (a GPU's name, or "CPU")."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        return "CPU" if device.platform == "cpu" else f"{device.platform} {device.device_kind}"
    if backend == "torch":
        import torch

        return torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    return f"GPU {gpus[0].name}" if gpus else "CPU"


def _print_table(ready, adam, by_label, ratios):
    """One row per candidate: median ms/step, median ratios to Adam and to what it wraps, target."""
    def ratio(candidate, against):
        if candidate is adam:
            return 1.0 if against == "adam" else None
        values = ratios[candidate.label][against]
        return statistics.median(values) if values else None

    header = f"{'candidate':34s} {'ms/step':>8s} {'x Adam':>7s} {'wraps':>30s} {'x wrapped':>9s}  target"
    print(header)
    print("-" * len(header))
    for candidate in ready:
        ms = statistics.median(candidate.times) * 1e3
        to_adam = ratio(candidate, "adam")
        to_wrapped = ratio(candidate, "wrapped")
        target_text = verdict(candidate, to_adam, to_wrapped, lambda label: ratio(by_label[label], "wrapped")
                              if label in by_label else None)
        print(
            f"{candidate.label:34s} {ms:8.2f} {to_adam:7.2f} {candidate.wraps or '':>30s} "
            f"{'' if to_wrapped is None else f'{to_wrapped:9.2f}':>9s}  {target_text}"
        )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20, help="steps per timed call (default 20)")
    parser.add_argument("--repeats", type=int, default=7, help="round-robin repeats (default 7)")
    parser.add_argument("--backend", choices=BACKENDS,
                        help="Keras backend to time (re-runs the script with KERAS_BACKEND set; default: "
                             "the current one); ratios are to that backend's own keras.optimizers.Adam")
    parser.add_argument("--jit", action="store_true",
                        help="TensorFlow: compile the step with XLA (jit_compile=True); JAX always jits")
    parser.add_argument("--cpu-time", action="store_true",
                        help="one thread, timed by the process CPU clock (for a shared, busy machine)")
    parser.add_argument("--hidden", type=int, default=512,
                        help="width of both hidden layers (default 512); the PyTorch side matches it")
    parser.add_argument("--batch", type=int, default=128, help="batch size (default 128)")
    parser.add_argument("--soap-blocks", type=int, nargs="+", default=[1024], metavar="N",
                        help="SOAP rows with these max_block_size values besides its defaults (default 1024)")
    parser.add_argument("--only", nargs="*", default=[], metavar="NAME",
                        help="time only candidates whose label starts with one of these (plus their baselines)")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.repeats < 1 or args.hidden < 1 or args.batch < 1:
        parser.error("--steps, --repeats, --hidden and --batch must be >= 1")

    global CLOCK, HIDDEN
    HIDDEN = args.hidden
    if args.cpu_time:
        CLOCK = time.process_time
        _one_thread()
    if args.backend not in (None, keras.backend.backend()):
        parser.error(f"--backend {args.backend}: KERAS_BACKEND is {keras.backend.backend()!r} (run the script directly)")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.batch, 784)).astype("float32")
    y = rng.integers(0, 10, size=(args.batch,)).astype("int32")

    found, skipped = candidates(args.jit, args.soap_blocks)
    if args.only:
        wanted = [c for c in found if any(c.label.startswith(o) for o in args.only)]
        needed = {BASELINE} | {c.wraps for c in wanted if c.wraps}
        if any(c.target == SOAP_TARGET for c in wanted):
            needed |= {TORCH_ADAMW, TORCH_SOAP}
        found = [c for c in found if c in wanted or c.label in needed]

    print(_description(args))
    ready = []
    for candidate in found:
        try:
            candidate.compile(x, y, args.jit)
            ready.append(candidate)
        except Exception as error:  # noqa: BLE001 - one failing candidate must not stop the run
            print(f"{candidate.label}: failed to build: {type(error).__name__}: {str(error)[:100]}")
    by_label = {c.label: c for c in ready}
    if BASELINE not in by_label:
        print("the Adam baseline failed; no ratios")
        return 1

    # Round-robin: every repeat times every candidate once, in an order rotated from
    # repeat to repeat. Each candidate's run is preceded by a run of Adam (and of what it
    # wraps): the ratios compare runs taken back to back, so the slow drift of a shared
    # machine's load cancels out.
    adam = by_label[BASELINE]
    ratios = {c.label: {"adam": [], "wrapped": []} for c in ready}
    others = [c for c in ready if c is not adam]
    for repeat in range(args.repeats):
        shift = repeat % max(len(others), 1)
        for candidate in others[shift:] + others[:shift]:
            base = adam.run(args.steps)
            adam.times.append(base)
            wrapped = by_label.get(candidate.wraps) if candidate.wraps not in (None, BASELINE) else None
            inner = wrapped.run(args.steps) if wrapped is not None else None
            own = candidate.run(args.steps)
            candidate.times.append(own)
            ratios[candidate.label]["adam"].append(own / base)
            if candidate.wraps == BASELINE:
                ratios[candidate.label]["wrapped"].append(own / base)
            elif inner is not None:
                ratios[candidate.label]["wrapped"].append(own / inner)

    _print_table(ready, adam, by_label, ratios)
    for name in skipped:
        print(f"skipped (not available): {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
