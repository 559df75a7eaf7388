#!/usr/bin/env bash
# Submit a scenario's sweep to Slurm: one job per seed for its shared stages (world, SFT,
# preference data, reward model), then one array task per cell once they have all succeeded.
# Prints the array job's id. Afterwards, on any machine with the shared runs folder,
# `alignlab run SCENARIO [the same options]` merges every finished cell into results/.
#
# Usage: scripts/slurm/submit.sh SCENARIO [--set SECTION.KEY=VALUE ...] [--runs DIR]
# Environment:
#   ALIGNLAB      the binary (default: target/release/alignlab of this checkout)
#   CELL_THREADS  torch threads (and Slurm CPUs) per cell (default 1)
#   PREP_THREADS  torch threads (and Slurm CPUs) of a seed's shared stages (default 2)
#   SBATCH_ARGS   further sbatch options for every job, e.g. "--partition=gpu --time=2:00:00"
#   SLURM_LOGS    folder of the jobs' logs (default slurm-logs)
# A cell's results depend on its thread count (float summation order): a cluster run matches
# `alignlab run --jobs N` of the same scenario where CELL_THREADS = threads / N and the shared
# stages ran with PREP_THREADS = threads.
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 SCENARIO [--set K=V ...] [--runs DIR]" >&2; exit 2; }
SCENARIO=$1
shift
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${ALIGNLAB:-$HERE/../../target/release/alignlab}
BIN=$(readlink -f "$BIN")
CELL_THREADS=${CELL_THREADS:-1}
PREP_THREADS=${PREP_THREADS:-2}
LOGS=${SLURM_LOGS:-slurm-logs}
mkdir -p "$LOGS"
# Also checks the scenario and the options before anything is submitted.
mapfile -t CELLS < <("$BIN" cells "$SCENARIO" "$@" | cut -f1)
[ ${#CELLS[@]} -gt 0 ] || { echo "$SCENARIO has no cells" >&2; exit 1; }
deps=""
for seed in $(printf '%s\n' "${CELLS[@]}" | awk '{print $2}' | sort -un); do
    cmd=$(printf '%q ' "$BIN" prepare "$SCENARIO" "$@" --seed "$seed" --threads "$PREP_THREADS" --quiet)
    # shellcheck disable=SC2086
    id=$(sbatch --parsable ${SBATCH_ARGS:-} --job-name=alignlab-prepare --cpus-per-task="$PREP_THREADS" --output="$LOGS/prepare-seed$seed-%j.log" --wrap "$cmd")
    deps="$deps:$id"
done
# shellcheck disable=SC2086
sbatch --parsable ${SBATCH_ARGS:-} --job-name=alignlab-cells --dependency="afterok$deps" --array=0-$((${#CELLS[@]} - 1)) --cpus-per-task="$CELL_THREADS" --output="$LOGS/cell-%A_%a.log" "$HERE/cell.sh" "$BIN" "$CELL_THREADS" "$SCENARIO" "$@"
