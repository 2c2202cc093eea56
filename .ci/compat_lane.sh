#!/usr/bin/env bash
# Compatibility lane: the conformance suite, the optimizer matrix, the _compat tests and the
# Optuna search's own tests (not its multi-process ones) at the LOWEST Keras, TensorFlow,
# KerasTuner, Optuna and cmaes that pyproject.toml allows (the full suite
# runs at the newest in .ci/run; the constructor fuzz, which checks our own argument
# validation and not the framework's, runs there only). The floor versions are read from pyproject.toml, so the
# pins and this lane cannot drift apart. Extra arguments go to pytest (e.g. -n 1).
#
#   bash .ci/compat_lane.sh            # venv at .venv-compat (override: COMPAT_VENV=path)
set -euo pipefail
cd "$(dirname "$0")/.."
export TF_CPP_MIN_LOG_LEVEL=2
export KERAS_TRAINKIT_CACHE="${KERAS_TRAINKIT_CACHE:-$PWD/.ci-cache}"
venv="${COMPAT_VENV:-$PWD/.venv-compat}"
start=$(date +%s)

# "keras>=3.8,<3.16" -> "keras==3.8.*": the lowest release line each pin allows.
mapfile -t floor < <(python3 - <<'EOF'
import re, tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
deps = project["dependencies"] + project["optional-dependencies"]["optuna"]
for name in ("keras", "tensorflow", "keras-tuner", "optuna", "cmaes"):
    spec = next(d for d in deps if re.match(rf"{re.escape(name)}\s*[<>=!~]", d))
    low = re.search(r">=\s*([0-9][0-9.]*)", spec)
    if not low:
        raise SystemExit(f"pyproject.toml: {spec!r} has no '>=' floor for the compatibility lane")
    print(f"{name}=={low.group(1)}.*")
EOF
)
if [ "${#floor[@]}" -ne 5 ]; then
    echo "compat lane: could not read the keras, tensorflow, keras-tuner, optuna and cmaes floors from pyproject.toml" >&2
    exit 1
fi
echo "compat lane: installing ${floor[*]}"
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q "${floor[@]}" "pytest>=7.4" "pytest-timeout>=2.2" "hypothesis>=6.90" -e .
installed=$(date +%s)
"$venv/bin/python" - <<'EOF'
import cmaes, keras, keras_tuner, optuna, tensorflow as tf
print(f"compat lane: Keras {keras.__version__}, TensorFlow {tf.__version__}, KerasTuner "
      f"{keras_tuner.__version__}, Optuna {optuna.__version__}, cmaes {cmaes.__version__}")
EOF

status=0
TIMEFORMAT="compat lane tests: %R s wall, %U s user + %S s system CPU"
time "$venv/bin/python" -m pytest -p no:cacheprovider -q \
    tests/conformance tests/optimizers/test_matrix.py tests/_compat \
    tests/callbacks/test_monitor_direction.py \
    tests/tuning/test_optuna_space.py tests/tuning/test_optuna_search.py \
    tests/tuning/test_optuna_storage.py tests/tuning/test_pareto.py \
    -k "not constructor_fuzz and not constructor_grid" "$@" || status=$?
end=$(date +%s)
echo "compat lane: install $((installed - start)) s, tests $((end - installed)) s, total $((end - start)) s"
exit "$status"
