#!/usr/bin/env bash
# The workflow on a real (one-node, localhost) SLURM cluster, through the same profile users
# run on theirs (workflow/profiles/slurm) and snakemake-executor-plugin-slurm:
#   1. installs Debian's munge, slurmctld, slurmd and slurm-client (needs root and apt);
#   2. writes a one-node slurm.conf for localhost (this machine's CPUs and memory, partitions
#      `cpu` and `gpu` as the profile names them, no accounting: no slurmdbd);
#   3. starts munged, slurmctld and `slurmd -N localhost` by hand (no systemd) and checks
#      `sinfo` and `srun hostname`;
#   4. runs the smoke config through the SLURM executor in a scratch copy of the workflow
#      (results in results/smoke/ there),
#      polling job states with squeue (sacct needs accounting, which is off here);
#   5. stops the daemons it started, by PID, whatever happens (trap).
# Every step that waits on SLURM is bounded by `timeout`.
#
#   bash .ci/slurm.sh                 # all steps
#   bash .ci/slurm.sh --up-only       # stop after `srun hostname` (checks the cluster only)
#   bash .ci/slurm.sh -- ARGS...      # extra snakemake arguments, e.g. --config 'backbones=["oracle-exact"]'
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
UP_ONLY=0
EXTRA=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --up-only) UP_ONLY=1; shift ;;
        --) shift; EXTRA=("$@"); break ;;
        *) echo "usage: $0 [--up-only] [-- snakemake args...]" >&2; exit 2 ;;
    esac
done

WORK=$(mktemp -d /tmp/lsd-slurm.XXXXXX)
export SLURM_CONF="$WORK/slurm.conf"
LINKED_CONF=""

log() { printf '[slurm.sh] %s\n' "$*"; }

stop_daemons() {
    local rc=$?
    # daemons write their own pid files; kill exactly those, newest first
    for pidfile in "$WORK/slurmd.pid" "$WORK/slurmctld.pid" "$WORK/munged.pid"; do
        if [[ -s "$pidfile" ]]; then
            local pid
            pid=$(cat "$pidfile")
            if kill -0 "$pid" 2>/dev/null; then
                log "stopping $(basename "$pidfile" .pid) (pid $pid)"
                kill "$pid" 2>/dev/null || true
                for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
                kill -9 "$pid" 2>/dev/null || true
            fi
        fi
    done
    if [[ -n "$LINKED_CONF" && -L "$LINKED_CONF" ]]; then
        rm -f "$LINKED_CONF"
    fi
    if [[ $rc -ne 0 ]]; then
        log "failed (exit $rc); daemon logs (kept in $WORK):"
        tail -n 30 "$WORK"/*.log 2>/dev/null || true
    else
        rm -rf "$WORK"
    fi
    exit $rc
}
trap stop_daemons EXIT

# 1. packages ---------------------------------------------------------------------------
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null \
        || ! command -v sbatch >/dev/null; then
    log "installing munge slurmctld slurmd slurm-client"
    timeout 600 apt-get update -qq
    DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -qq --no-install-recommends \
        munge slurmctld slurmd slurm-client >/dev/null
fi
if [[ ! -x .venv/bin/snakemake ]]; then
    make .venv/.installed
fi

# 2. configuration ----------------------------------------------------------------------
CPUS=$(nproc)
MEM_MB=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))  # leave 1 GiB to the system
mkdir -p "$WORK/state" "$WORK/spool" "$WORK/munge"
chmod 755 "$WORK"  # munged runs as the munge user and must reach its socket folder
cat >"$SLURM_CONF" <<EOF
ClusterName=lsdci
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$WORK/munge/munge.socket
StateSaveLocation=$WORK/state
SlurmdSpoolDir=$WORK/spool
SlurmctldPidFile=$WORK/slurmctld.pid
SlurmdPidFile=$WORK/slurmd.pid
SlurmctldLogFile=$WORK/slurmctld.log
SlurmdLogFile=$WORK/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
# finished jobs stay visible to squeue for 10 minutes: the executor polls with squeue
MinJobAge=600
SlurmctldTimeout=60
SlurmdTimeout=60
NodeName=localhost CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=cpu Nodes=localhost Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=localhost MaxTime=INFINITE State=UP
EOF
log "slurm.conf: $SLURM_CONF (localhost, $CPUS CPUs, $MEM_MB MB)"
# Job steps (srun inside the executor's sbatch jobs) do not inherit SLURM_CONF; they read the
# default path. Link it there for the run, unless a real configuration lives there.
if [[ -e /etc/slurm/slurm.conf || -L /etc/slurm/slurm.conf ]]; then
    echo "slurm.sh: /etc/slurm/slurm.conf exists; refusing to replace a real SLURM configuration" >&2
    exit 1
fi
mkdir -p /etc/slurm
ln -s "$SLURM_CONF" /etc/slurm/slurm.conf
LINKED_CONF=/etc/slurm/slurm.conf

# 3. daemons ----------------------------------------------------------------------------
chown munge:munge "$WORK/munge"
runuser -u munge -- /usr/sbin/munged --socket="$WORK/munge/munge.socket" \
    --pid-file="$WORK/munge/munged.pid" --log-file="$WORK/munge/munged.log" \
    --seed-file="$WORK/munge/munged.seed"
cp "$WORK/munge/munged.pid" "$WORK/munged.pid"
log "munged pid $(cat "$WORK/munged.pid")"
timeout 10 munge -S "$WORK/munge/munge.socket" -n | timeout 10 unmunge -S "$WORK/munge/munge.socket" >/dev/null

/usr/sbin/slurmctld -f "$SLURM_CONF"
/usr/sbin/slurmd -N localhost -f "$SLURM_CONF"
log "slurmctld pid $(cat "$WORK/slurmctld.pid" 2>/dev/null || echo ?), slurmd pid $(cat "$WORK/slurmd.pid" 2>/dev/null || echo ?)"

log "waiting for the node to come up"
timeout 120 bash -c 'until sinfo -h -N -o "%T" 2>/dev/null | grep -qE "^(idle|mixed|allocated)"; do sleep 1; done'
sinfo
timeout 60 srun -N1 -n1 -p cpu hostname
timeout 60 srun -N1 -n1 -p gpu --mem=100 hostname
[[ $UP_ONLY == 1 ]] && { log "cluster up: sinfo and srun work"; exit 0; }

# 4. the smoke workflow through the SLURM executor ----------------------------------------
RUN="$WORK/run"
mkdir -p "$RUN"
cp -r Snakefile config.yaml workflow envs "$RUN/"
log "snakemake --profile workflow/profiles/slurm (smoke config) in $RUN"
# The profile's memory requests are sized for GPU nodes; this node has $MEM_MB MB.
cd "$RUN"
set +e
OMP_NUM_THREADS=1 timeout 1800 "$REPO/.venv/bin/snakemake" \
    --profile workflow/profiles/slurm \
    --configfile workflow/configs/smoke.yaml \
    --slurm-status-command squeue \
    --slurm-init-seconds-before-status-checks 5 \
    --seconds-between-status-checks 5 \
    --slurm-logdir "$WORK/slurm-logs" --slurm-keep-successful-logs \
    --default-resources slurm_partition=cpu mem_mb=1000 runtime=30 \
    --set-resources schedules:slurm_partition=gpu schedules:mem_mb=2000 sample:slurm_partition=gpu \
        sample:mem_mb=2000 evaluate:slurm_partition=gpu evaluate:mem_mb=2000 \
    --jobs 2 --retries 0 "${EXTRA[@]}" 2>&1 | tee "$WORK/snakemake.log"
status=${PIPESTATUS[0]}
set -e
cd "$REPO"
if [[ $status -ne 0 ]]; then
    log "snakemake failed (exit $status); job logs:"
    tail -n 20 "$RUN"/results/smoke/logs/*/*/*.log "$RUN"/results/smoke/logs/*.log 2>/dev/null || true
    exit "$status"
fi
# the smoke config writes its own folder, results/smoke/ (config name: the config file's name)
test -s "$RUN/results/smoke/metrics.csv"
test -s "$RUN/results/smoke/README.md"
log "smoke workflow done through SLURM: $(($(wc -l <"$RUN/results/smoke/metrics.csv") - 1)) metric rows"
