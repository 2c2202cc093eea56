#!/usr/bin/env bash
# The GPU step-time figures of docs/benchmarks.md (issue 19: Muon and SOAP; issue 21: the
# backends), as run on the lent GPU machine from the repository root:
#
#   bash benchmarks/gpu_step_times.sh            # the issue-19 tables, to $OUT (default /tmp/gpu-out)
#   bash benchmarks/gpu_step_times.sh scaling    # SOAP's block sizes, Muon at large batches,
#                                                # Newton-Schulz alone per precision
#
# That machine has JAX and PyTorch with CUDA but neither TensorFlow nor Keras: Keras, its
# two small dependencies and pytorch-optimizer travel as wheels in .whl/ (see
# docs/benchmarks.md), installed here into /tmp/site. keras_trainkit imports without
# TensorFlow on the JAX and PyTorch backends (only the Trainer needs it), so these runs
# time the same optimizer code as the CPU tables. SMOKE=1 runs each table for a few steps.
set -u
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD" PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
export XLA_PYTHON_CLIENT_PREALLOCATE=false  # JAX and the PyTorch SOAP comparison share the GPU
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 | tee "$OUT/gpu.txt"
KERAS_BACKEND=jax python3 -c "import sys, keras, jax, torch; print(sys.version.split()[0], 'keras', keras.__version__, 'jax', jax.__version__, jax.devices(), 'torch', torch.__version__, torch.cuda.is_available())" 2>&1 | tee -a "$OUT/gpu.txt"

STEPS=50; REPEATS=7; WIDE_STEPS=20
[ "${SMOKE:-0}" = 1 ] && STEPS=2 && REPEATS=1 && WIDE_STEPS=1
ISSUE19="ADOPT AdEMAMix MARS Cautious Muon keras.Muon SOAP"
table() {  # table NAME SECONDS BACKEND ARGS...: one benchmark run, its output in $OUT/NAME.txt
    local name=$1 seconds=$2 backend=$3; shift 3
    echo "== $name: KERAS_BACKEND=$backend python benchmarks/optimizer_step.py $*" | tee "$OUT/$name.txt"
    KERAS_BACKEND=$backend timeout "$seconds" python3 benchmarks/optimizer_step.py "$@" 2>&1 \
        | grep -v -E "^(WARNING|I0000|E0000)" | tee -a "$OUT/$name.txt"
}
if [ "${1:-issue19}" = scaling ]; then
    table jax_soap_blocks 120 jax --steps $STEPS --repeats 5 --only SOAP --soap-blocks 128 512 1024 2048
    table jax_soap_blocks_wide 120 jax --steps $WIDE_STEPS --repeats 5 --hidden 2048 --batch 1024 \
        --only SOAP --soap-blocks 512 1024 2048
    table jax_muon_batch8192 90 jax --steps $WIDE_STEPS --repeats 5 --hidden 2048 --batch 8192 --only Muon keras.Muon
    table jax_muon_batch4096 60 jax --steps $WIDE_STEPS --repeats 5 --batch 4096 --only Muon keras.Muon
    KERAS_BACKEND=jax timeout 60 python3 benchmarks/newton_schulz_precision.py 2>&1 \
        | grep -v -E "^(WARNING|I0000|E0000)" | tee "$OUT/newton_schulz.txt"
    exit 0
fi
table jax_issue19 150 jax --steps $STEPS --repeats $REPEATS --only $ISSUE19
table jax_issue19_wide 120 jax --steps $WIDE_STEPS --repeats $REPEATS --hidden 2048 --batch 1024 --only $ISSUE19
table torch_issue19 120 torch --steps $WIDE_STEPS --repeats $REPEATS --only $ISSUE19
table torch_issue19_wide 100 torch --steps $WIDE_STEPS --repeats 5 --hidden 2048 --batch 1024 --only $ISSUE19
