#!/usr/bin/env bash
# Time to 94 % on a lent GPU (issue 28): trainlab's cifar10-94 and cifar10-94-muon recipes against
# the airbench94 and airbench94_muon renditions, 5 seeds, the protocol of the CPU benchmark
# (bench/bench_time_to_accuracy.py --device cuda); the tables show the airbench README's A100 times
# (3.83 s and 2.59 s) beside the measured ones, for scale only (another GPU, another timing).
#
# The device machine starts bare and offline (python3 with PyTorch/CUDA, NumPy, Pillow; no
# pydantic) and a call carries at most 64 MiB, so CIFAR-10 and the missing wheels travel in two
# parts packed here once (see bench/gpu_time_to_accuracy.py):
#
#   here:           .venv/bin/python bench/gpu_time_to_accuracy.py pack
#   device call 1:  carry [".gpu-tta/part1"], timeout_s 120:  bash bench/gpu_time_to_accuracy.sh check
#   device call 2:  AT ONCE after call 1 (the machine keeps part1 only while warm, about 30 s),
#                   carry [".gpu-tta/part2"], timeout_s 600:  bash bench/gpu_time_to_accuracy.sh run
#   here, after:    .venv/bin/python bench/gpu_time_to_accuracy.py merge <files_at>/tta-trials-gpu.json
#                   .venv/bin/python bench/bench_time_to_accuracy.py --render-from bench/tta-trials.json --write-docs
#
# Warm-up: airbench times runs made one after another in a warm process (airbench94_muon after
# an explicit warm-up run), so the benchmark trains each side once, untimed and unrecorded
# (seed 0, full budget), before its timed runs: no timed run pays for the CUDA context, loading
# cuBLAS/cuDNN kernels or decoding the data cache, on either side. cudnn.benchmark stays off on
# both sides (torch's default, which trainlab's engine keeps), so there is no autotuning to warm.
#
# With --keep-going a side whose run fails (its traceback is in the log) is skipped from then on and
# the others go on. The runs file is written under $OUT after every run (the runs are seed-major, so a cut-off run
# keeps whole seeds of every side), and the benchmark stops at GPU_TTA_BUDGET_S (default 450 s) so
# that the call ends within about 8 minutes and still renders the table. Run 'run' again on the
# still-warm machine to train only the runs it lacks (it resumes from a copy kept there).
#
# Variables (for a local smoke test): PYTHON (python3), OUT (bench/out/gpu), GPU_TTA_PACK (.gpu-tta),
# GPU_TTA_WORK (/tmp/gpu-tta), GPU_TTA_DEVICE (cuda), GPU_TTA_ARGS (extra benchmark arguments,
# e.g. "--quick"), GPU_TTA_BUDGET_S (450).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

mode=${1:-run}
PY=${PYTHON:-python3}
PACK=${GPU_TTA_PACK:-.gpu-tta}
WORK=${GPU_TTA_WORK:-/tmp/gpu-tta}
OUT=${OUT:-bench/out/gpu}
DEVICE=${GPU_TTA_DEVICE:-cuda}
EXTRA=${GPU_TTA_ARGS:-}
BUDGET_S=${GPU_TTA_BUDGET_S:-450}
TRIALS=$OUT/tta-trials-gpu.json
mkdir -p "$OUT" "$WORK"

environment() {
    nvidia-smi -L 2>/dev/null || echo "nvidia-smi: not found"
    "$PY" - <<'EOF'
import platform
import torch
print(f"python {platform.python_version()}, torch {torch.__version__}, CUDA {torch.version.cuda}, "
      f"cuDNN {torch.backends.cudnn.version()}, GPU: "
      f"{torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none visible'}")
try:
    from PIL import features
    print(f"Pillow WebP: {features.check('webp')}")
except ImportError:
    print("Pillow: not installed (the data cannot be unpacked)")
EOF
}

install_wheels() {
    # pydantic and what it needs, for trainlab; into a folder of their own, put first on the path.
    local wheels=("$PACK"/part1/wheels/*.whl)
    if [ -e "${wheels[0]}" ] && [ ! -e "$WORK/site/.done" ]; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target "$WORK/site" "${wheels[@]}" || return 1
        touch "$WORK/site/.done"
    fi
    export PYTHONPATH="$WORK/site:$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
}

case "$mode" in
check)
    # Call 1: part1 arrived whole, the wheels install, the GPU is there.
    environment
    "$PY" bench/gpu_time_to_accuracy.py verify --pack "$PACK" --part part1 || exit 1
    install_wheels || exit 1
    "$PY" -c "import pydantic, trainlab; print('trainlab imports (pydantic', pydantic.VERSION + ')')" || exit 1
    echo "ready: make call 2 now (carry $PACK/part2, command 'bash bench/gpu_time_to_accuracy.sh run')"
    ;;
run)
    environment 2>&1 | tee "$OUT/tta-gpu-env.txt"
    "$PY" bench/gpu_time_to_accuracy.py unpack --pack "$PACK" --dest "$WORK/data" || exit 1
    install_wheels || exit 1
    export TRAINLAB_DATA="$WORK/data" TRAINLAB_CACHE="$WORK/cache" PYTHONUNBUFFERED=1
    keep="$WORK/tta-trials-gpu.json"  # survives between calls while the machine is warm; $OUT does not
    if [ -z "$EXTRA" ] && [ -f "$keep" ] && [ ! -f "$TRIALS" ]; then
        cp "$keep" "$TRIALS" && echo "resuming from the runs of the last call on this machine"
    fi
    # shellcheck disable=SC2086  # EXTRA is a list of arguments
    timeout -k 15 "$BUDGET_S" "$PY" bench/bench_time_to_accuracy.py --device "$DEVICE" --seeds 5 \
        --recipes cifar10-94,cifar10-94-muon --trials-json "$TRIALS" --keep-going $EXTRA 2>&1 | tee "$OUT/tta-gpu.log"
    status=${PIPESTATUS[0]}
    if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
        echo "stopped at the ${BUDGET_S} s guard: the runs recorded so far are in $TRIALS; run 'run' again" \
             "on the warm machine to train the rest"
    fi
    if [ -f "$TRIALS" ]; then
        [ -z "$EXTRA" ] && cp "$TRIALS" "$keep"
        # The benchmark printed the table when it finished; cut off, this is where it is printed.
        "$PY" bench/bench_time_to_accuracy.py --render-from "$TRIALS" --json "$OUT/tta-rows-gpu.json" \
            >"$OUT/tta-table-gpu.txt" 2>&1
        [ "$status" -eq 0 ] || cat "$OUT/tta-table-gpu.txt"
    fi
    exit "$status"
    ;;
*)
    echo "usage: bash bench/gpu_time_to_accuracy.sh check|run" >&2
    exit 2
    ;;
esac
