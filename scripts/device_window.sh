#!/usr/bin/env bash
# All of this project's GPU work in one run of about 9 minutes, for a short GPU window.
#
#   scripts/device_window.sh [--dry-run] [options] OUT_DIR [-- more train flags]
#   scripts/device_window.sh --unpack OUT_DIR [--into CHECKOUT] [--runs-into DIR] [--force]
#   scripts/device_window.sh --rest OUT_DIR2     # what did not fit, into a second folder
#
# Stages, in order, each with its own time limit, logged as it goes; a failing stage is
# recorded and the next one runs:
#   1 env     nvidia-smi, torch and CUDA versions
#   2 tests   python3 -m pytest -m cuda (the CUDA-marked tests)
#   3 bench   python3 -m bench.bench --device cuda --profile (the issue's two targets first)
#   4 train   the three 64x64 generators (gamma 0.3, 0.5, 0.7, scripts/train_gammas.sh's
#             recipe, G_ema with a half-life sweep) side by side on the GPU until the budget's
#             training share ends; a runs folder from an earlier window is resumed
#   5 score   scripts/score_runs.py (also alongside the training), then
#     export  scripts/export_pretrained.py --select
#   6 pack    archives under the output folder's limits; manifest.json and summary.md
#
# Options: --budget S (default 540), --tests-s S (90), --bench-s S (150), --runs DIR
# (default runs/window64), --work DIR (default runs/window-work), --max-steps N (200000),
# --stop-at N (stop once every run reached step N; default: at the budget's training share),
# --skip tests,bench,train,score,export. --dry-run: every stage on the CPU at a toy size.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
PY=${PYTHON:-python3}
helper() { "$PY" -m scripts.device_window "$@"; }

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
die() {
  echo "error: $*" >&2
  exit 2
}
number() { [[ $2 =~ ^[0-9]+$ ]] || die "$1 needs a whole number of seconds or steps, not '$2'"; }

dry=0 budget='' tests_s='' bench_s='' runs='' work='' max_steps=200000 stop_at='' skip='' out=''
train_flags=()
while [ $# -gt 0 ]; do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --unpack) shift; exec "$PY" -m scripts.device_window unpack "$@" ;;
    --rest | --check)
      what=${1#--}
      [ $# -ge 2 ] || die "--$what needs an output folder"
      folder=$2
      shift
      ;;
    --dry-run) dry=1 ;;
    --budget) number "$1" "${2-}"; budget=$2; shift ;;
    --tests-s) number "$1" "${2-}"; tests_s=$2; shift ;;
    --bench-s) number "$1" "${2-}"; bench_s=$2; shift ;;
    --max-steps) number "$1" "${2-}"; max_steps=$2; shift ;;
    --stop-at) number "$1" "${2-}"; stop_at=$2; shift ;;
    --runs) [ -n "${2-}" ] || die "--runs needs a folder"; runs=$2; shift ;;
    --work) [ -n "${2-}" ] || die "--work needs a folder"; work=$2; shift ;;
    --skip) skip=,${2-},; shift ;;
    --) shift; train_flags=("$@"); break ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) [ -z "$out" ] || die "one output folder only, got '$out' and '$1'"; out=$1 ;;
  esac
  shift
done

if [ "${what-}" = check ]; then exec "$PY" -m scripts.device_window check "$folder"; fi
if [ "${what-}" = rest ]; then
  work=${work:-runs/window-work}
  [ -f "$work/left.json" ] || die "no window's work folder at $work (give --work DIR as the window had it)"
  [ ! -e "$folder" ] || [ -z "$(ls -A "$folder")" ] || die "$folder is not empty; give a new or empty folder"
  exec "$PY" -m scripts.device_window pack "$folder" --work "$work" --runs "$(cat "$work/runs")" --rest
fi
[ -n "$out" ] || {
  usage >&2
  exit 2
}

# ---------------------------------------------------------------- settings by mode
if [ $dry = 1 ]; then
  # generous limits: a dry run checks the code paths, and must not time out on a busy machine
  budget=${budget:-600} tests_s=${tests_s:-120} bench_s=${bench_s:-120}
  work=${work:-$(mktemp -d)/work}
  runs=${runs:-$(dirname "$work")/runs64}
  device=cpu every=2 until=2 score_n=16 export_n=16 stop_at=${stop_at:-2} grace=90 reserve_score=120
  reserve_export=120 reserve_pack=40 min_train=5 busy=0 stop_margin=0
  toy=(--filters 8 --h-dim 16 --z-dim 16 --log-every 1 --sample-every 2 --checkpoint-every 2
    --score-every 2 --heldout-every 2 --ema-kimg 1)
  bench_args=(--dry-run --profile)
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} # two cores shared by many processes
else
  budget=${budget:-540} tests_s=${tests_s:-90} bench_s=${bench_s:-150}
  runs=${runs:-runs/window64} work=${work:-runs/window-work}
  device=cuda every=1000 until=1000000000 score_n=562 export_n='' stop_at=${stop_at:-0} grace=60 reserve_score=45
  reserve_export=90 reserve_pack=30 min_train=30 busy=4 stop_margin=15
  # a checkpoint (23 MiB at 64x64, n=32) every 1,000 steps, the scoring's interval: graphed, a
  # run makes 500 steps in a few seconds, and writing one every 500 would take a share of them
  toy=(--ema-kimg 1 --ema-sweep '0.5,2,5,10' --checkpoint-every 1000)
  bench_args=(--device cuda --profile --min-s 1.5)
fi
[ "$budget" -ge 60 ] || die "--budget $budget is too short: the stages need a minute at least"

# The output folder: new, empty, or one this script wrote before (re-running is safe).
if [ -e "$out" ] && [ -n "$(ls -A "$out" 2>/dev/null)" ] && [ ! -f "$out/manifest.json" ] &&
  [ ! -f "$out/window.log" ]; then
  die "$out holds files this script did not write; give a new or empty output folder"
fi
# The work folder is emptied at the start: only one this script made (its marker) or a new one.
if [ -e "$work" ] && [ -n "$(ls -A "$work" 2>/dev/null)" ] && [ ! -f "$work/.device-window" ]; then
  die "$work holds files this script did not write; give --work a new folder"
fi
mkdir -p "$out" "$runs" "$work" || die "cannot create $out, $runs or $work"
out=$(cd "$out" && pwd) runs=$(cd "$runs" && pwd) work=$(cd "$work" && pwd)
case $runs/ in "$work"/*) die "--runs $runs lies inside the work folder $work, which is emptied at each start" ;; esac
case $out/ in "$work"/* | "$runs"/*) die "the output folder $out lies inside $work or $runs" ;; esac
rm -f "$out"/* "$out"/.??*
if ! { rm -rf "${work:?}"/* "$work"/.??* && mkdir -p "$work/logs" && touch "$work/.device-window"; }; then
  die "cannot empty the work folder $work"
fi
echo "$runs" >"$work/runs"
log() { echo "[$(date -u +%H:%M:%S) +${SECONDS}s] $*" | tee -a "$out/window.log"; }
started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
runs_rel='' # where --unpack puts the runs back: the same folder of the checkout, if inside it
case $runs in "$PWD"/*) runs_rel=${runs#"$PWD"/} ;; esac
printf '{"started": "%s", "budget_s": %s, "dry_run": %s, "runs": "%s", "hardware": "%s"}\n' \
  "$started" "$budget" "$([ $dry = 1 ] && echo true || echo false)" "${runs_rel//\"/}" \
  "$( (timeout 20 nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null || echo "no GPU: CPU") |
    head -n 1 | sed 's/["\\]//g')" >"$work/window.json"
log "window: budget ${budget}s, output $out, runs $runs, work $work$([ $dry = 1 ] && echo ', dry run')"

left() { echo $((budget - SECONDS - $1)); }
record() { helper record "$work" "$@" || true; }
skipped() { [[ $skip == *,$1,* ]]; }

# stage NAME LIMIT RESERVE CMD...: CMD under a time limit (cut to leave RESERVE seconds for
# the stages after it), its output in work/logs/NAME.log, its result recorded.
stage() {
  local name=$1 limit=$2 reserve=$3
  shift 3
  local room t0 rc status
  room=$(left "$reserve")
  [ "$room" -lt "$limit" ] && limit=$room
  if skipped "$name"; then
    record "$name" skipped 0 0 "--skip"
    log "$name: skipped (--skip)"
    return 0
  fi
  if [ "$limit" -lt 5 ]; then
    record "$name" skipped 0 "$limit" "no time left in the budget"
    log "$name: skipped, no time left"
    return 0
  fi
  log "$name: start (limit ${limit}s): $*"
  t0=$SECONDS
  timeout --kill-after=10 "$limit" "$@" >"$work/logs/$name.log" 2>&1
  rc=$?
  case $rc in
    0) status=ok ;;
    124 | 137) status=timeout ;;
    *) status=failed ;;
  esac
  # the bench and the scoring write as they go: at their limit they are cut, not failed
  [[ $status = timeout && " bench score " == *" $name "* ]] && status="cut"
  [[ $status = ok || $status = cut ]] || failures+=("$name")
  record "$name" "$status" $((SECONDS - t0)) "$limit" "exit $rc"
  tail -n 5 "$work/logs/$name.log" | sed 's/^/    /' | tee -a "$out/window.log"
  log "$name: $status (exit $rc) in $((SECONDS - t0))s"
  return 0
}
failures=()
partial_pack() { helper pack "$out" --work "$work" --runs "$runs" "${dryflag[@]}" >>"$out/window.log" 2>&1 || log "pack: failed"; }
dryflag=()
[ $dry = 1 ] && dryflag=(--dry-run)

# ---------------------------------------------------------------- 1 env
post=$((reserve_score + reserve_export + reserve_pack))
stage env 30 $((post + min_train)) bash -o pipefail -c "'$PY' -m scripts.device_window env | tee '$work/env.txt'"
if [ $dry = 0 ] && ! "$PY" -c 'import torch, sys; sys.exit(not torch.cuda.is_available())' 2>/dev/null; then
  log "torch sees no CUDA device here: the GPU stages will fail (use --dry-run on a CPU)"
fi

# ---------------------------------------------------------------- 2 tests
mapfile -t cuda_tests < <(grep -l 'mark\.cuda' tests/test_*.py 2>/dev/null)
[ ${#cuda_tests[@]} -gt 0 ] || cuda_tests=(tests/ --continue-on-collection-errors)
pytest_args=(-q -m cuda -p no:cacheprovider --junitxml "$work/tests.xml" "${cuda_tests[@]}")
# pyproject's addopts name pytest-timeout's --timeout; without that plugin pytest would refuse
"$PY" -c 'import pytest_timeout' 2>/dev/null || pytest_args=(-o 'addopts=-ra' "${pytest_args[@]}")
stage tests "$tests_s" $((post + min_train)) "$PY" -m pytest "${pytest_args[@]}"

# ---------------------------------------------------------------- 3 bench
stage bench "$bench_s" $((post + min_train)) "$PY" -m scripts.device_window bench "${bench_args[@]}" --out-dir "$work/bench"
partial_pack

# ---------------------------------------------------------------- 4 train (and score alongside)
for gamma in 0.3 0.5 0.7; do
  if [ -f "$runs/gamma$gamma/config.json" ] && [ -z "$(ls -d "$runs/gamma$gamma"/checkpoints/step_* 2>/dev/null)" ]; then
    log "train: $runs/gamma$gamma has no checkpoint to resume (its checkpoint did not come back from the last window: see --rest); that run will fail to start"
  fi
done
helper snapshot "$runs" "$work/train-start.json" || true
train_end=$((budget - post))
stop_time=$((train_end - stop_margin)) # the trainers finish a step and checkpoint after STOP
if skipped train; then
  record train skipped 0 0 "--skip"
elif [ $((train_end - SECONDS)) -lt "$min_train" ]; then
  record train skipped 0 $((train_end - SECONDS)) "no time left in the budget"
  log "train: skipped, no time left"
else
  log "train: until +${train_end}s (or step ${max_steps}$([ "$stop_at" -gt 0 ] && echo ", or all runs past step $stop_at"))"
  t0=$SECONDS
  PYTHON=$PY bash scripts/train_gammas.sh "$runs" "$max_steps" 64 --device "$device" "${toy[@]}" \
    "${train_flags[@]}" >"$work/logs/train.log" 2>&1 &
  train_pid=$!
  rm -f "$work/train.done"
  if ! skipped score; then
    # until the training ends; a pass under way then may go on into the score stage's time
    helper score "$runs" --json "$runs/scores-64.json" --work "$work" --every "$every" \
      --until "$until" --n "$score_n" --seconds $((budget - reserve_export - reserve_pack - 5 - SECONDS)) \
      --until-file "$work/train.done" \
      --busy-cores "$busy" >"$work/logs/score-alongside.log" 2>&1 &
    score_pid=$!
  fi
  why="the budget's training share ended"
  while kill -0 "$train_pid" 2>/dev/null; do
    if [ "$SECONDS" -ge "$stop_time" ]; then break; fi
    if [ "$stop_at" -gt 0 ] && [ "$(helper steps "$runs" 2>/dev/null || echo -1)" -ge "$stop_at" ]; then
      why="every run passed step $stop_at"
      break
    fi
    sleep 2
  done
  if kill -0 "$train_pid" 2>/dev/null; then
    # The trainer checks for STOP after every step, then writes a checkpoint and exits.
    log "train: stopping ($why): STOP in each run"
    for gamma in 0.3 0.5 0.7; do [ -d "$runs/gamma$gamma" ] && touch "$runs/gamma$gamma/STOP"; done
    for _ in $(seq "$grace"); do kill -0 "$train_pid" 2>/dev/null || break; sleep 1; done
  fi
  if kill -0 "$train_pid" 2>/dev/null; then
    log "train: still running ${grace}s after STOP; SIGTERM to each trainer (it checkpoints on it)"
    for gamma in 0.3 0.5 0.7; do
      pid=$(sed -n 's/^  "pid": \([0-9]*\).*/\1/p' "$runs/gamma$gamma/status.json" 2>/dev/null)
      if [ -n "$pid" ] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$runs/gamma$gamma"; then
        kill -TERM "$pid" 2>/dev/null
      fi
    done
    for _ in $(seq 30); do kill -0 "$train_pid" 2>/dev/null || break; sleep 1; done
  fi
  wait "$train_pid"
  rc=$?
  touch "$work/train.done"
  status=ok
  [ $rc = 0 ] || { status=failed && failures+=(train); }
  record train "$status" $((SECONDS - t0)) $((train_end - t0)) "exit $rc; $why"
  tail -n 3 "$runs"/gamma*.log 2>/dev/null | sed 's/^/    /' | tee -a "$out/window.log"
  log "train: $status (exit $rc) in $((SECONDS - t0))s"
  if [ -n "${score_pid-}" ]; then
    t0=$SECONDS
    wait "$score_pid"
    rc=$?
    record score-alongside "$([ $rc = 0 ] && echo ok || echo failed)" $((SECONDS - t0)) 0 \
      "exit $rc; the pass under way when training ended"
  fi
fi

# ---------------------------------------------------------------- 5 score and export
score_s=$(left $((reserve_export + reserve_pack)))
[ "$score_s" -gt "$reserve_score" ] && score_s=$reserve_score
stage score "$score_s" $((reserve_export + reserve_pack)) "$PY" -m scripts.device_window score "$runs" \
  --json "$runs/scores-64.json" --work "$work" --every "$every" --until "$until" \
  --n "$score_n" --seconds $((score_s - 5))
export_args=("$runs" --scores "$runs/scores-64.json" --work "$work" --every "$every")
[ -n "$export_n" ] && export_args+=(--n "$export_n")
stage export "$reserve_export" "$reserve_pack" "$PY" -m scripts.device_window export "${export_args[@]}"

# ---------------------------------------------------------------- 6 pack
log "pack: the output folder, under its limits"
if ! helper pack "$out" --work "$work" --runs "$runs" --final "${dryflag[@]}"; then
  echo "pack failed: $out may break the output folder's limits (see above)" >&2
  exit 1
fi
if [ ${#failures[@]} -gt 0 ]; then
  echo "window done in ${SECONDS}s: $out; failed: ${failures[*]} (see summary.md and window.tar.gz)" >&2
  exit 1
fi
echo "window done in ${SECONDS}s: $out"
