#!/usr/bin/env bash
# `make test-slurm`: a sweep on a real Slurm, checked against `alignlab run --jobs 2`.
#
# Installs Debian's slurm-wlm and munge if missing, starts munged and a single-node slurmctld +
# slurmd on localhost from a generated slurm.conf (in a temporary folder), submits a tiny
# scenario with scripts/slurm/submit.sh (the shared stages as a job, the cells as an array
# after it), merges with `alignlab run`, and checks that eval.csv and metrics.csv equal, byte for
# byte, those of `alignlab run --jobs 2` of the same scenario (one thread per cell, two for the
# shared stages, on both sides). The daemons are stopped at the end, also on failure.
#
# Usage: scripts/slurm-check.sh [ALIGNLAB_BINARY]   (as root, or with the packages installed
# and permission to start the daemons)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$(readlink -f "${1:-$ROOT/target/release/alignlab}")
SCENARIO=scenarios/sentiment.toml
# The tiny settings of `make hf-check`: seconds per cell.
TINY=(--set sft.steps=30 --set world.n_train=300 --set world.n_val=50 --set world.n_train_prompts=20 --set world.n_eval_prompts=16 --set model.d_model=32 --set model.n_layer=1 --set train.steps=6 --set reward.epochs=1 --set eval.every=3 --set ppo.iterations=2 --set ppo_gt.iterations=2 --set 'sweep.seeds=[0,1]' --set 'best_of_n.n=[1,4]' --set name=slurm-check)

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
    echo "slurm-check: installing slurm-wlm and munge (Debian packages)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends slurm-wlm munge >/dev/null
fi

WORK=$(mktemp -d /tmp/alignlab-slurm.XXXXXX)
cleanup() {
    # Stop both Slurm daemons (and munged if this script started it); keep $WORK's logs only
    # when the check failed.
    SLURM_CONF=$WORK/slurm.conf scontrol shutdown >/dev/null 2>&1 || true
    sleep 1
    for f in slurmd slurmctld; do
        [ -f "$WORK/$f.pid" ] && kill "$(cat "$WORK/$f.pid")" 2>/dev/null || true
    done
    # Only the munged this script started, by the process id it wrote: a munged the user
    # already ran (or one started meanwhile) is left alone.
    [ -n "${MUNGE_STARTED:-}" ] && [ -s "$WORK/munge/munged.pid" ] && kill "$(cat "$WORK/munge/munged.pid")" 2>/dev/null || true
    [ -n "${PASSED:-}" ] && rm -rf "$WORK"
    true
}
trap cleanup EXIT
start=$(date +%s)

# munge: a key, then the daemon (unless one is running).
if ! pgrep -x munged >/dev/null; then
    [ -s /etc/munge/munge.key ] || { mkdir -p /etc/munge; dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none; }
    chown munge:munge /etc/munge/munge.key 2>/dev/null || true
    chmod 400 /etc/munge/munge.key
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge 2>/dev/null || true
    # Its process id in $WORK (munged's --pid-file), so that cleanup stops this one only.
    chmod 711 "$WORK"
    mkdir -p "$WORK/munge" && chown munge:munge "$WORK/munge" 2>/dev/null || true
    runuser -u munge -- /usr/sbin/munged --pid-file="$WORK/munge/munged.pid" 2>/dev/null \
        || /usr/sbin/munged --force --pid-file="$WORK/munge/munged.pid"
    MUNGE_STARTED=1
fi

HOST=$(hostname -s)
CPUS=$(nproc)
MEM=$(awk '/MemTotal/ {print int($2 / 1024 * 0.8)}' /proc/meminfo)
mkdir -p "$WORK/state" "$WORK/spool"
cat > "$WORK/slurm.conf" <<CONF
ClusterName=alignlab-check
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$WORK/state
SlurmdSpoolDir=$WORK/spool
SlurmctldPidFile=$WORK/slurmctld.pid
SlurmdPidFile=$WORK/slurmd.pid
SlurmctldLogFile=$WORK/slurmctld.log
SlurmdLogFile=$WORK/slurmd.log
SlurmctldPort=16817
SlurmdPort=16818
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
MpiDefault=none
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=check Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF=$WORK/slurm.conf
/usr/sbin/slurmctld
/usr/sbin/slurmd
for _ in $(seq 60); do
    sinfo -h -o %T 2>/dev/null | grep -q idle && break
    sleep 1
done
sinfo -h -o %T | grep -q idle || { echo "slurm-check: the node did not come up; logs in $WORK" >&2; tail -5 "$WORK"/slurm*.log >&2; exit 1; }
echo "slurm-check: slurmctld and slurmd up on $HOST ($CPUS CPUs) in $(( $(date +%s) - start )) s"

cd "$ROOT"
t0=$(date +%s)
ARRAY=$(SLURM_LOGS="$WORK/logs" CELL_THREADS=1 PREP_THREADS=2 ALIGNLAB="$BIN" scripts/slurm/submit.sh "$SCENARIO" "${TINY[@]}" --runs "$WORK/runs-slurm")
echo "slurm-check: submitted the shared stages and the cells (array job $ARRAY)"
while [ -n "$(squeue -h -o %i 2>/dev/null)" ]; do
    sleep 2
done
if "$BIN" cells "$SCENARIO" "${TINY[@]}" --runs "$WORK/runs-slurm" | grep -q pending; then
    echo "slurm-check: some cells did not finish; logs in $WORK/logs" >&2
    "$BIN" cells "$SCENARIO" "${TINY[@]}" --runs "$WORK/runs-slurm" | grep pending >&2
    tail -5 "$WORK"/logs/*.log >&2
    exit 1
fi
"$BIN" run "$SCENARIO" "${TINY[@]}" --runs "$WORK/runs-slurm" --results "$WORK/results-slurm" --threads 2 --quiet >/dev/null
echo "slurm-check: Slurm sweep and merge in $(( $(date +%s) - t0 )) s"

t0=$(date +%s)
"$BIN" run "$SCENARIO" "${TINY[@]}" --runs "$WORK/runs-local" --results "$WORK/results-local" --jobs 2 --threads 2 --quiet >/dev/null
echo "slurm-check: alignlab run --jobs 2 in $(( $(date +%s) - t0 )) s"

for f in eval.csv metrics.csv; do
    if ! cmp "$WORK/results-slurm/slurm-check/$f" "$WORK/results-local/slurm-check/$f"; then
        echo "slurm-check: FAILED: $f differs between the Slurm sweep and alignlab run --jobs 2 (folders in $WORK)" >&2
        exit 1
    fi
done
echo "slurm-check: passed: eval.csv and metrics.csv byte-identical ($(wc -l < "$WORK/results-slurm/slurm-check/eval.csv") evaluation rows); total $(( $(date +%s) - start )) s"
PASSED=1
