#!/usr/bin/env bash
# The shipped generators' three training runs, side by side: the same data, seed and recipe;
# only gamma differs (0.3, 0.5, 0.7). A run that already exists is resumed (exactly: k_t,
# learning rate, optimizer and random state come from its last checkpoint), so the script may
# be stopped and called again, on this machine or another, with a larger STEPS.
#
#   scripts/train_gammas.sh RUNS_DIR STEPS [RESOLUTION] [more train flags ...]
#   scripts/train_gammas.sh runs/faces64 30000 64
#   python scripts/export_pretrained.py runs/faces64 --select --every 1000
#
# The recipe is the faces preset (began_core/presets.py, `train --help`), measured in the
# docs/results.md (Small data: measured); checkpoints every 500 steps, 400 of them kept, so that the
# scores can pick any step afterwards. On a CPU each run takes one thread (three runs share
# the cores better than one run uses them); on a GPU all three share it.
set -euo pipefail

if [ $# -lt 2 ]; then
  sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
runs=$1
steps=$2
resolution=${3:-64}
shift $(($# < 3 ? $# : 3))
cd "$(dirname "$0")/.."
python=${PYTHON:-python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$runs"

pids=()
for gamma in 0.3 0.5 0.7; do
  out="$runs/gamma$gamma"
  if [ -f "$out/config.json" ]; then
    what=(--resume "$out" --steps "$steps")
  else
    what=(--out "$out" --preset faces-64 --resolution "$resolution" --gamma "$gamma"
      --seed 0 --steps "$steps" --log-every 50 --sample-every 1000 --checkpoint-every 500
      --keep-checkpoints 400)
  fi
  "$python" -m began_core train "${what[@]}" --quiet "$@" >>"$runs/gamma$gamma.log" 2>&1 &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
tail -n 2 "$runs"/gamma*.log
exit $status
