#!/usr/bin/env bash
# Backend lane: the conformance suite and the optimizer / transform / schedule reference
# tests run natively under KERAS_BACKEND=jax and KERAS_BACKEND=torch (one pytest process
# each, in the current virtual environment: the [test] extra brings jax[cpu], optax,
# torch==2.13.0 CPU and pytorch-optimizer). Each backend writes JUnit XML to
# $BACKEND_LANE_OUT/<backend>.xml (default .ci-backend-lane/), which
# scripts/make_backend_table.py reads to rebuild the support table in docs/index.md.
#
#   bash .ci/backend_lane.sh                  # jax and torch, one after the other
#   BACKEND_LANE_PARALLEL=1 bash .ci/backend_lane.sh   # both at once (2 cores)
#   BACKEND_LANE_BACKENDS="tensorflow" bash .ci/backend_lane.sh   # the same selection on TF
#
# Selection (what it runs, and what it leaves to the
# main run): the conformance checks except the constructor fuzz/grid (argument
# validation, backend-independent) and except the optimizers' model.fit/save/load
# exercise, which tests/optimizers/test_backends.py already runs on both backends in the
# main run with more checks (TensorFlow's numbers, evaluate, predict, resume); every
# reference test (tests/optimizers/test_reference_*.py, test_transforms_reference.py,
# test_batched_linalg.py: Shampoo's and SOAP's decompositions on JAX's CPU runtime,
# test_gradient_noise_backends.py: each backend's GradientNoise sampler,
# test_skip_contract_backends.py: the skip contract in model.fit,
# test_transform_carried_state.py: every transform's state that outlives a step,
# tests/schedules/test_closed_form.py, test_against_optax.py, test_against_torch.py).
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
export TF_CPP_MIN_LOG_LEVEL=2
export KERAS_TRAINKIT_CACHE="${KERAS_TRAINKIT_CACHE:-$PWD/.ci-cache}"
out="${BACKEND_LANE_OUT:-$PWD/.ci-backend-lane}"
backends="${BACKEND_LANE_BACKENDS:-jax torch}"
mkdir -p "$out"

selection=(
    tests/conformance/test_conformance.py
    tests/optimizers/test_reference_*.py
    tests/optimizers/test_transforms_reference.py
    tests/optimizers/test_batched_linalg.py
    tests/optimizers/test_gradient_noise_backends.py
    tests/optimizers/test_skip_contract_backends.py
    tests/optimizers/test_transform_carried_state.py
    tests/schedules/test_closed_form.py
    tests/schedules/test_against_optax.py
    tests/schedules/test_against_torch.py
)
deselect="not constructor_fuzz and not constructor_grid and not (use_in_fit_and_save_load and optimizers.)"

run_backend() {
    local backend=$1
    shift
    local start status=0
    start=$(date +%s)
    local TIMEFORMAT="backend lane: $backend tests %R s wall, %U s user + %S s system CPU"
    time KERAS_BACKEND="$backend" python -m pytest -p no:cacheprovider -q "${selection[@]}" -k "$deselect" \
        --junitxml="$out/$backend.xml" -o junit_suite_name="$backend" "$@" > "$out/$backend.log" 2>&1 || status=$?
    echo "backend lane: $backend exit $status, $(( $(date +%s) - start )) s: $(tail -n 1 "$out/$backend.log")"
    return "$status"
}

status=0
if [ "${BACKEND_LANE_PARALLEL:-0}" = "1" ]; then
    pids=()
    for backend in $backends; do
        run_backend "$backend" "$@" &
        pids+=($!)
    done
    for pid in "${pids[@]}"; do
        wait "$pid" || status=1
    done
else
    for backend in $backends; do
        run_backend "$backend" "$@" || status=1
    done
fi
for backend in $backends; do
    if [ "$status" -ne 0 ]; then
        grep -E "^(FAILED|ERROR|XPASS)" "$out/$backend.log" || true
    fi
done
exit "$status"
