#!/usr/bin/env bash
# One array task of scripts/slurm/submit.sh: the cell on line SLURM_ARRAY_TASK_ID (from 0) of
# `alignlab cells` (which lists every cell of the scenario in a fixed order).
# Usage (by sbatch): cell.sh ALIGNLAB THREADS SCENARIO [options]
set -euo pipefail
BIN=$1
THREADS=$2
SCENARIO=$3
shift 3
CELL=$("$BIN" cells "$SCENARIO" "$@" | sed -n "$((SLURM_ARRAY_TASK_ID + 1))p" | cut -f1)
[ -n "$CELL" ] || { echo "no cell on line $SLURM_ARRAY_TASK_ID of \`alignlab cells $SCENARIO\`" >&2; exit 1; }
# shellcheck disable=SC2086
exec "$BIN" cell "$SCENARIO" "$@" $CELL --threads "$THREADS"
