#!/usr/bin/env bash
# Slurm test (label slurm): a single-node Slurm cluster on localhost (munged, slurmctld, slurmd
# started here by hand, MpiDefault=pmix, private config under a temp dir), then
# deploy/slurm/switchyard.sbatch with the built-in default model on CPU ranks (coordinator + 2
# workers); the results must equal the single-process engine's. Stops exactly the daemons it
# started (recorded PIDs, comm checked), also on failure. Hard limits: `timeout` on every step.
# Needs root (munged runs as the munge user) and the packages of scripts/install_deps.sh
# (slurm-wlm, munge); exits 77 (skipped) when not root.
# Usage: tests/slurm_test.sh PATH/TO/switchyard
set -euo pipefail
bin=$(realpath "$1")
src=${SWITCHYARD_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
if [ "$(id -u)" -ne 0 ]; then echo "slurm_test: SKIPPED (needs root to run munged/slurmd)"; exit 77; fi
fail() { echo "slurm_test: FAIL: $*" >&2; exit 1; }
for tool in munged slurmctld slurmd sbatch; do
  command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] ||
    fail "$tool missing: run scripts/install_deps.sh (installs slurm-wlm and munge)"
done

lh=$(mktemp -d /tmp/switchyard-slurm.XXXXXX)
chmod 0755 "$lh"
export SLURM_CONF=$lh/etc/slurm.conf
pids=()
stop_daemons() {
  for pid in "${pids[@]}"; do
    # Only what we started: the PID must still be one of our daemons (guards against reuse).
    comm=$(cat "/proc/$pid/comm" 2>/dev/null || true)
    case "$comm" in munged|slurmctld|slurmd) kill -TERM "$pid" 2>/dev/null || true ;; esac
  done
  for pid in "${pids[@]}"; do
    for _ in $(seq 1 50); do
      state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || echo X)
      [ "$state" = X ] || [ "$state" = Z ] && break
      sleep 0.1
    done
  done
  rm -rf "$lh"
}
trap stop_daemons EXIT

mkdir -p "$lh"/{etc,spool/ctld,spool/d,log,run,job}
install -d -o munge -g munge -m 0755 "$lh/munge"
setpriv --reuid=munge --regid=munge --init-groups mungekey --create --keyfile="$lh/munge/munge.key"
# 3 tasks (coordinator + 2 workers) must fit one node: claim at least 4 CPUs (config_overrides
# lets slurmd accept more than it has; the ranks mostly wait on each other).
cpus=$(nproc)
overrides=""
if [ "$cpus" -lt 4 ]; then cpus=4; overrides="SlurmdParameters=config_overrides"; fi
cat > "$SLURM_CONF" <<CONF
ClusterName=switchyardci
SlurmctldHost=localhost
SlurmctldPort=16817
SlurmdPort=16818
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$lh/munge/munge.socket.2
MpiDefault=pmix
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
KillWait=5
MailProg=/bin/true
StateSaveLocation=$lh/spool/ctld
SlurmdSpoolDir=$lh/spool/d
SlurmctldPidFile=$lh/run/slurmctld.pid
SlurmdPidFile=$lh/run/slurmd.pid
SlurmctldLogFile=$lh/log/slurmctld.log
SlurmdLogFile=$lh/log/slurmd.log
$overrides
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus State=UNKNOWN
PartitionName=ci Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF

setsid setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged -F \
  --socket="$lh/munge/munge.socket.2" --key-file="$lh/munge/munge.key" \
  --pid-file="$lh/munge/munged.pid" --seed-file="$lh/munge/munged.seed" \
  --log-file="$lh/munge/munged.log" >"$lh/log/munged.out" 2>&1 &
pids+=($!)
for _ in $(seq 1 50); do [ -S "$lh/munge/munge.socket.2" ] && break; sleep 0.1; done
timeout 10 munge -S "$lh/munge/munge.socket.2" -n | timeout 10 unmunge -S "$lh/munge/munge.socket.2" >/dev/null ||
  fail "munge round trip"
setsid /usr/sbin/slurmctld -D -c -f "$SLURM_CONF" >"$lh/log/slurmctld.out" 2>&1 &
pids+=($!)
setsid /usr/sbin/slurmd -D -N localhost -f "$SLURM_CONF" >"$lh/log/slurmd.out" 2>&1 &
pids+=($!)
for i in $(seq 1 150); do
  [ "$(timeout 5 sinfo -h -n localhost -o %T 2>/dev/null)" = idle ] && break
  [ "$i" -lt 150 ] || { cat "$lh"/log/*.log >&2; fail "node never became idle"; }
  sleep 0.2
done

cd "$lh/job"
model=$lh/job/default-model
"$bin" make-default-model --out "$model" >/dev/null
cat > requests.jsonl <<'JSONL'
{"id": "a", "prompt_ids": [0, 17, 42, 256, 1024, 7], "max_tokens": 8, "ignore_eos": true}
{"id": "b", "prompt_ids": [0, 99, 3], "max_tokens": 8, "ignore_eos": true}
{"id": "c", "prompt_ids": [5, 6, 7, 8], "max_tokens": 8, "ignore_eos": true}
JSONL
cat > cluster.yaml <<YAML
cluster:
  model: $model
  workers: 2
  transport: mpi
  placement: eplb
  redundant_experts_per_worker: 1
  step_timeout_ms: 30000
  register_timeout_ms: 60000
YAML
"$bin" run --model "$model" --requests requests.jsonl --out ref.jsonl 2>/dev/null
export SWITCHYARD_BIN=$bin SWITCHYARD_TIMEOUT=120
export OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader OMPI_MCA_btl_tcp_if_include=lo
job=$(timeout 10 sbatch --parsable --overcommit --ntasks-per-node=3 --output="$lh/job/job.out" \
  "$src/deploy/slurm/switchyard.sbatch" cluster.yaml requests.jsonl "$lh/job/out.jsonl")
state=""
for _ in $(seq 1 900); do  # 180 s
  state=$(timeout 5 scontrol show job "$job" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p')
  case "$state" in COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY) break ;; esac
  sleep 0.2
done
[ "$state" = COMPLETED ] || { cat "$lh/job/job.out" >&2; timeout 5 scancel "$job" || true; fail "job $job ended $state"; }
grep -q "tasks on localhost" "$lh/job/job.out" || fail "job output lacks the launch line"
tokens() { python3 -c 'import json,sys; [print(json.loads(l)["id"], json.loads(l)["tokens"]) for l in open(sys.argv[1])]' "$1"; }
diff <(tokens ref.jsonl) <(tokens "$lh/job/out.jsonl") >&2 ||
  { cat "$lh/job/job.out" >&2; fail "Slurm run tokens differ from the single-process engine"; }
echo "slurm_test: sbatch job $job (coordinator + 2 workers, srun --mpi=pmix) reproduced the engine"
