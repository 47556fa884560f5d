#!/usr/bin/env bash
# The reference benchmark (issue 24): four runs of the suite, each resumable, then one report.
#
#   bench/reference_benchmark.sh OUT RUN        RUN: main, cb, ablations, budgets (again: resumes it)
#   bench/reference_benchmark.sh OUT report     one leaderboard and report of the four, into OUT/report
#   bench/reference_benchmark.sh OUT publish DEST   the four runs copied to DEST without Ray's state and
#                                                  log, their tables rebuilt by this checkout, DEST/report
#   bench/reference_benchmark.sh OUT main --dry-run    what a run would cost (further options go to `run`)
#
# main: every searched method and the manual baselines on the three local tasks that learn on MiniLM
# with more data (MRPC needs its whole train split: 2,000 examples gave LoRA F1 80.3-82.6 against the
# majority class's 78.6, 3,668 gave 85.1), 5 seeds, one harness. cb: CB has 250 training examples, so
# it runs with a harness of its own (8 epochs; a merge allows a task its own harness), the methods'
# options as in main. ablations: the paper's Table 2 variants beside main's bipeft on SST-2, 3 seeds.
# budgets: the paper's Fig. 3 (main holds the 1e-3 point). report: the four merged into one report.
# Interrupt with Ctrl+C; run the same command again to continue. DATA_DIR: the GLUE/SuperGLUE files.
set -euo pipefail
cd "$(dirname "$0")/.."
USAGE="usage: bench/reference_benchmark.sh OUT main|cb|ablations|budgets|report|publish DEST"
OUT=${1:?$USAGE}
RUN=${2:?$USAGE}
PY=${PYTHON:-python}
RUNS=(main cb ablations budgets)
# The four runs under $1 merged into $1/report: one leaderboard, report and statistics over them
merged_report() {
  exec "$PY" -m suite table --out "$1/main" --out "$1/ablations" --out "$1/budgets" --out "$1/cb" --to "$1/report"
}
MAIN=(--space s2 --data-dir "${DATA_DIR:-../shared/data}" --budget 1e-3 --max-train-samples 4000 --max-eval-samples 1000
      --epochs 2 --batch-size 8 --max-source-length 128)
METHODS=bipeft,s3delta,prunepeft,autopeft,apet,adalora,lora,bitfit,ia3,dora
# AutoPEFT under ASHA: 16 candidates (8 random), each proxy one epoch on at most 500 examples, validated
# every 16 steps (one set of options for every task: a merge compares a method's options)
AUTOPEFT=(--method-option autopeft.candidates=16 --method-option autopeft.n_init=8 --method-option autopeft.q=2
          --method-option autopeft.scheduler=asha --method-option autopeft.eval_every=16
          --method-option autopeft.max_train_samples=500 --method-option autopeft.epochs=1)
case "$RUN" in
  main) ARGS=("${MAIN[@]}" --methods "$METHODS" --tasks demo/rotten_tomatoes,glue/sst2,glue/mrpc --seeds 0,1,2,3,4
              "${AUTOPEFT[@]}");;
  cb) ARGS=(--space s2 --data-dir "${DATA_DIR:-../shared/data}" --budget 1e-3 --max-train-samples 250 --max-eval-samples 500
            --epochs 8 --batch-size 8 --eval-every 64 --max-source-length 128 --methods "$METHODS" --tasks superglue/cb
            --seeds 0,1,2,3,4 "${AUTOPEFT[@]}");;
  ablations) ARGS=("${MAIN[@]}" --methods bipeft-entangled,bipeft-b2d,bipeft-d2b,bipeft-noselect --tasks glue/sst2 --seeds 0,1,2);;
  budgets) ARGS=("${MAIN[@]}" --methods bipeft,s3delta,prunepeft,adalora --tasks glue/sst2 --seeds 0,1,2 --budget 5e-4,2e-3);;
  report) merged_report "$OUT";;
  publish)
    DEST=${3:?$USAGE}
    for run in "${RUNS[@]}"; do
      [ -f "$OUT/$run/run.json" ] || { echo "bench/reference_benchmark.sh: no run in $OUT/$run" >&2; exit 2; }
    done
    for run in "${RUNS[@]}"; do
      # Ray's state and the run log hold this machine's paths; the tables are rebuilt so that they are
      # what this checkout's `table` writes (tests/test_committed_results.py checks that)
      mkdir -p "$DEST/$run"
      tar -C "$OUT/$run" --exclude=./ray --exclude=./run.lock --exclude=./run.log -cf - . | tar -C "$DEST/$run" -xf -
      "$PY" -m suite table --out "$DEST/$run" > /dev/null
    done
    merged_report "$DEST";;
  *) echo "bench/reference_benchmark.sh: unknown run '$RUN' (choose from main, cb, ablations, budgets, report, publish)" >&2; exit 2;;
esac
if [ -f "$OUT/$RUN/run.json" ] && [ $# -eq 2 ]; then
  exec "$PY" -m suite run --resume --out "$OUT/$RUN"
fi
exec "$PY" -m suite run "${ARGS[@]}" "${@:3}" --out "$OUT/$RUN"
