#!/usr/bin/env bash
# Every GPU check of the project in one command, for a lent GPU machine (whose image has torch,
# Lightning, torchvision, torchmetrics, scikit-learn and pytest, but not Hydra):
#
#   bash benchmarks/gpu_checks.sh bundle     # here: Hydra's pure-Python packages and MNIST (gzipped) into .device/
#   bash benchmarks/gpu_checks.sh            # there, with .device carried: everything below, logs into $OUT
#   SMOKE=1 bash benchmarks/gpu_checks.sh    # here, on the CPU: the same steps, each cut to a smoke run
#
# The steps: what torch sees (device, bf16); the CUDA tests; benchmarks/overhead.py --device cuda (alone
# on the GPU, as its ratio is on wall seconds); then side by side, one process each: LeNet-5 classic and
# classic distorted (the README's experiments; CLASSIC_SEEDS, default "1 2 3", CLASSIC_PASSES, default 20)
# and modern LeNet-5 in bf16 (trainer=gpu, seeds 1-3). Each run's last lines and a results table per
# experiment end up in $OUT/summary.txt, each run's log in $OUT/run_logs/. On the device tool, within a 15-minute
# budget (start-up included), the classic runs time two passes of one seed instead of 20 passes of three:
#   run(command="CLASSIC_SEEDS=1 CLASSIC_PASSES=2 LENET_TIMEOUT=150 bash benchmarks/gpu_checks.sh",
#       carry=[".device"], timeout_s=590)                                         ($OUT is set there)
# (the whole set, 20 passes each, takes about 10 minutes more than one call may run.)
set -uo pipefail
cd "$(dirname "$0")/.."
if [[ -x .venv/bin/python ]]; then PYTHON=${PYTHON:-.venv/bin/python}; else PYTHON=${PYTHON:-python3}; fi
BUNDLE=.device

if [[ "${1:-}" == bundle ]]; then
    set -e
    rm -rf "$BUNDLE.tmp" && mkdir -p "$BUNDLE.tmp/site" "$BUNDLE.tmp/data/MNIST/raw"
    site=$(.venv/bin/python -c "import hydra, os; print(os.path.dirname(os.path.dirname(hydra.__file__)))")
    for package in hydra hydra_plugins omegaconf antlr4 submitit; do cp -r "$site/$package" "$BUNDLE.tmp/site/"; done
    raw=${DATA_DIR:-data}/MNIST/raw
    for name in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
        if [[ -f "$raw/$name" ]]; then gzip -c "$raw/$name" > "$BUNDLE.tmp/data/MNIST/raw/$name.gz"
        elif [[ -f "$raw/$name.gz" ]]; then cp "$raw/$name.gz" "$BUNDLE.tmp/data/MNIST/raw/"
        else echo "gpu_checks.sh bundle: $raw/$name is missing; run \`make data\` (or set DATA_DIR) first." >&2; exit 2
        fi
    done
    rm -rf "$BUNDLE" && mv "$BUNDLE.tmp" "$BUNDLE"
    grep -qx "/$BUNDLE/" .git/info/exclude 2>/dev/null || echo "/$BUNDLE/" >> .git/info/exclude
    echo "$BUNDLE/: $(du -sh "$BUNDLE" | cut -f1); on the GPU machine: bash benchmarks/gpu_checks.sh, carrying $BUNDLE"
    exit 0
fi

OUT=${OUT:-logs/gpu_checks}
RUNS=$(mktemp -d)  # the runs' folders (checkpoints too); their logs go to $LOGS, which comes back with $OUT
LOGS=$OUT/run_logs
mkdir -p "$OUT" "$LOGS"
export PYTHONPATH=$PWD/$BUNDLE/site${PYTHONPATH:+:$PYTHONPATH} DATA_DIR=$PWD/$BUNDLE/data PYTHONUNBUFFERED=1
export WANDB_MODE=disabled
if [[ -n "${SMOKE:-}" ]]; then
    run_caps=(debug=smoke trainer.accelerator=cpu)
    gpu_trainer=()
    bench_caps=(--smoke)
else
    run_caps=(callbacks.progress_bar.refresh_rate=0)
    gpu_trainer=(trainer=gpu)
    bench_caps=()
fi
exec > >(tee "$OUT/summary.txt") 2>&1

echo "== what torch sees"
$PYTHON - <<'EOF'
import torch
print(f"torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}")
if torch.cuda.is_available():
    x = torch.randn(1024, 1024, device="cuda", dtype=torch.bfloat16)
    print(f"{torch.cuda.get_device_name()}, bf16 supported: {torch.cuda.is_bf16_supported()}, "
          f"bf16 matmul finite: {bool((x @ x).isfinite().all())}")
EOF

echo "== CUDA tests"
$PYTHON -m pytest -q -p no:cacheprovider tests/test_device_data.py \
    tests/test_forward_autoencoder.py::test_cuda_solve_equals_cpu_solve > "$OUT/cuda_tests.txt" 2>&1
tail -n 5 "$OUT/cuda_tests.txt"  # the whole log, failures' messages included, stays in $OUT

echo "== benchmarks/overhead.py --device cuda"
if ! $PYTHON -c "import torch" > /dev/null 2>&1; then
    echo "(skipped: $PYTHON cannot import torch)"
elif $PYTHON -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
    $PYTHON benchmarks/overhead.py --device cuda "${bench_caps[@]}" 2>&1 | tail -n 10  # 5 processes, summary, JSON
elif [[ -n "${SMOKE:-}" ]]; then
    echo "(no CUDA device: the same script on the CPU, at smoke size)"
    $PYTHON benchmarks/overhead.py --device cpu "${bench_caps[@]}" 2>&1 | tail -n 10
else
    echo "(skipped: no CUDA device)"
fi

echo "== LeNet-5 runs, side by side (logs: $LOGS)"
started=$SECONDS
LENET_TIMEOUT=${LENET_TIMEOUT:-400}  # seconds: a run cut short still leaves its log's tail in the summary
pids=()
launch() {  # launch <experiment> <seed> <overrides...>: one run in the background, its log and seconds in $LOGS
    local experiment=$1 seed=$2; shift 2
    ( begun=$SECONDS
      OMP_NUM_THREADS=1 timeout "$LENET_TIMEOUT" $PYTHON train.py experiment=$experiment seed=$seed "$@" \
          "hydra.run.dir=$RUNS/$experiment/$seed" "${run_caps[@]}" > "$LOGS/$experiment-$seed.log" 2>&1
      echo "exit $? after $((SECONDS - begun)) s" >> "$LOGS/$experiment-$seed.log" ) &
    pids+=($!)
}
for experiment in lenet5_classic_mnist lenet5_classic_mnist_distorted; do
    for seed in ${CLASSIC_SEEDS:-1 2 3}; do launch $experiment $seed "trainer.max_epochs=${CLASSIC_PASSES:-20}"; done
done
for seed in 1 2 3; do launch lenet5_mnist $seed "${gpu_trainer[@]}"; done
wait "${pids[@]}"  # not a bare wait: that would also wait for the tee above
echo "all runs ended after $((SECONDS - started)) s"
for log in "$LOGS"/*.log; do
    echo "-- $(basename "$log" .log): $(grep -o 'val/ and test/ metrics.*' "$log" | tail -n 1 || true) ($(tail -n 1 "$log"))"
    grep -q "Wrote .*results.json" "$log" || tail -n 5 "$log"
done
for experiment in lenet5_classic_mnist lenet5_classic_mnist_distorted lenet5_mnist; do
    $PYTHON evaluate.py "runs=$RUNS/$experiment" "metrics=[test/acc,train/acc]" > /dev/null 2>&1 \
        && cat "$RUNS/$experiment/table.md"
done
