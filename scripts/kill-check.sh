#!/usr/bin/env bash
# kill -9 at random moments, then resume: every output file must equal the uninterrupted run's.
#
#   scripts/kill-check.sh [BINARY] [SCENARIO] [--set k=v ...]
#
# Runs SCENARIO once uninterrupted, then again in another folder, killing the whole process
# group (the run and its --jobs cells) with SIGKILL at KILLS (default 3) random moments, each
# rerun resuming from what the last left; then compares every file of both results folders
# byte for byte. The invocation's own records (timing.csv, summary.csv, and numbers.csv's
# wall-time and ran-or-cached rows) cannot agree and are left out.
# Exit status 0 when everything else is identical. Seeds of the kill moments: KILL_SEED.
set -euo pipefail
BIN=${1:-./target/release/alignlab}
SCENARIO=${2:-scenarios/sentiment.toml}
shift $(( $# < 2 ? $# : 2 ))
KILLS=${KILLS:-3}
JOBS=${JOBS:-2}
RANDOM=${KILL_SEED:-7}
WORK=$(mktemp -d /tmp/alignlab-kill.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

# start NAME [--set ...]: the scenario into $WORK/NAME in the background, in a session of its
# own (setsid execs it: $pid is the run and its process group, so a kill of the group reaches
# the cells it starts); run NAME: the same, waited for.
start() {
    local name=$1
    shift
    setsid "$BIN" run "$SCENARIO" --threads 2 --jobs "$JOBS" --quiet \
        --results "$WORK/$name/results" --runs "$WORK/$name/runs" "$@" >>"$WORK/$name.log" 2>&1 &
    pid=$!
}
run() {
    start "$@"
    wait "$pid" || { echo "kill-check: the run failed:"; tail -5 "$WORK/$1.log"; exit 1; }
}
now() { date +%s.%N; }

t0=$(now)
run whole "$@"
whole_s=$(echo "$(now) - $t0" | bc)
echo "kill-check: uninterrupted run $whole_s s"

for k in $(seq 1 "$KILLS"); do
    # A moment between 5% and 60% of the uninterrupted run's time after this start.
    r=$(( 5 + RANDOM % 56 ))
    at=$(echo "scale=2; $whole_s * $r / 100" | bc)
    start killed "$@"
    sleep "$at"
    if kill -0 "$pid" 2>/dev/null; then
        kill -9 -- "-$pid" 2>/dev/null || kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        echo "kill-check: kill -9 $k at $at s after its start"
    else
        wait "$pid" || true
        echo "kill-check: kill $k at $at s came after the run had finished"
    fi
done
run killed "$@"
echo "kill-check: resumed run finished"

# Compare: byte for byte, except the invocation's own records: timing.csv (wall seconds) and
# summary.csv (what this invocation ran or found cached, its wall time and profile) are left
# out; numbers.csv is compared without its invocation rows (wall seconds, runs ran or cached,
# the invocation's TFLOP).
invocation='^(runs:|invocation,|run,(wall_s|tflop|ledger_s|shared_s),)'
status=0
for f in $(cd "$WORK/whole/results" && find . -type f | sort); do
    a="$WORK/whole/results/$f"
    b="$WORK/killed/results/$f"
    if [ ! -f "$b" ]; then
        echo "missing in the resumed run: $f"; status=1; continue
    fi
    cmp -s "$a" "$b" && continue
    case "$f" in
        */timing.csv|*/summary.csv) continue ;;
        */numbers.csv)
            diff <(grep -Ev "$invocation" "$a") <(grep -Ev "$invocation" "$b") >/dev/null && continue ;;
    esac
    echo "differs: $f"; status=1
    diff "$a" "$b" | head -10
done
n=$(cd "$WORK/whole/results" && find . -type f | wc -l)
if [ "$status" = 0 ]; then
    echo "kill-check: ok: $n files identical to the uninterrupted run's (the invocation's records aside)"
else
    echo "kill-check: FAILED"
fi
exit "$status"
