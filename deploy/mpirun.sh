#!/usr/bin/env bash
# The distributed runtime on this machine: one coordinator and N workers in one MPI world
# (mpirun MPMD: `-np 1 switchyard coordinator : -np N switchyard worker`), workers exchanging
# tokens over MPI, the coordinator driving them over TCP. Prints one JSON line per request.
# With --serve the first process is `switchyard serve` (the OpenAI HTTP API) instead, and it runs
# until SIGTERM/SIGINT reaches this script: the signal goes to the serve process only, which shuts
# the workers down, so every process and mpirun exit 0.
#
# Usage: deploy/mpirun.sh [--workers N] [--transport mpi|ucx|nccl] [--model DIR] [--config FILE]
#                         [--requests FILE.jsonl] [--out FILE] [--dump-logits FILE.npy]
#                         [--bin PATH]
#        deploy/mpirun.sh --serve [--workers N] [--transport ...] [--model DIR] [--config FILE]
#                         [--bin PATH] [-- SERVE FLAGS (--port 8000 --host 0.0.0.0 ...)]
# Defaults: 2 workers, transport mpi, the built-in default model in build/default-model (written
# if missing), a small request file. --config uses that YAML as is (its cluster.workers decides N;
# its serving: section configures --serve, flags after -- override it).
# Hard limit: SWITCHYARD_LAUNCH_TIMEOUT seconds for the whole run (default 600; with --serve none
# unless set).
set -euo pipefail
cd "$(dirname "$0")/.."
workers=2
transport=mpi
model=build/default-model
config=""
requests=""
out=""
bin=build/bin/switchyard
out_args=()
serve=0
serve_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --serve) serve=1; shift ;;
    --) shift; serve_args=("$@"); break ;;
    --workers) workers="$2"; shift 2 ;;
    --transport) transport="$2"; shift 2 ;;
    --model) model="$2"; shift 2 ;;
    --config) config="$2"; shift 2 ;;
    --requests) requests="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --dump-logits) out_args+=(--dump-logits "$2"); shift 2 ;;
    --bin) bin="$2"; shift 2 ;;
    *) echo "deploy/mpirun.sh: unknown argument '$1' (see the header of this script)" >&2; exit 2 ;;
  esac
done
[ -x "$bin" ] || { echo "deploy/mpirun.sh: $bin not built (cmake --build build --target switchyard)" >&2; exit 2; }
run_dir=$(dirname "$bin")/../deploy-run
mkdir -p "$run_dir"
if [ -z "$config" ]; then
  if [ ! -f "$model/config.json" ]; then
    "$bin" make-default-model --out "$model"
  fi
  config="$run_dir/cluster-$workers-$transport.yaml"
  cat > "$config" <<YAML
# Written by deploy/mpirun.sh (keys: configs/README.md).
cluster:
  model: $model
  workers: $workers
  transport: $transport
  coordinator_address: 127.0.0.1
  placement: eplb
  redundant_experts_per_worker: 1
YAML
else
  workers=$(sed -n 's/^ *workers: *\([0-9]*\).*/\1/p' "$config" | head -1)
  [ -n "$workers" ] || { echo "deploy/mpirun.sh: $config has no cluster.workers" >&2; exit 2; }
fi
if [ "$serve" = 0 ] && [ ${#serve_args[@]} -gt 0 ]; then
  echo "deploy/mpirun.sh: flags after -- are serve flags: use them with --serve" >&2; exit 2
fi
if [ "$serve" = 1 ] && [ -n "$requests$out${out_args[*]}" ]; then
  echo "deploy/mpirun.sh: --requests/--out/--dump-logits are for batch runs, not --serve" >&2; exit 2
fi
if [ "$serve" = 0 ] && [ -z "$requests" ]; then
  requests="$run_dir/default-requests.jsonl"
  cat > "$requests" <<'JSONL'
{"id": "a", "prompt_ids": [0, 17, 42, 256, 1024, 7], "max_tokens": 32}
{"id": "b", "prompt_ids": [0, 99, 3], "max_tokens": 32}
{"id": "c", "prompt_ids": [5, 6, 7, 8], "max_tokens": 16, "temperature": 0.8, "seed": 1}
JSONL
  if [ -f "$model/tokenizer.json" ]; then  # text in, text out
    echo '{"id": "d", "prompt": "The switchyard routes every token", "max_tokens": 16}' >> "$requests"
  fi
fi
[ -n "$out" ] && out_args+=(--out "$out")
# Shared memory between the ranks of this machine, loopback for TCP; 2 cores may host more ranks.
export OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader OMPI_MCA_rmaps_base_oversubscribe=1
# (OpenMP threads sleep when idle: the binaries set OMP_WAIT_POLICY=passive themselves, and
# SWITCHYARD_OMP_SPIN=on makes them spin briefly first; only for ranks with cores of their own.)
export OMPI_MCA_mpi_yield_when_idle=1
# UCX between ranks of one machine: shared memory, loopback TCP (override to use the network).
export UCX_TLS=${UCX_TLS:-self,sm,tcp} UCX_NET_DEVICES=${UCX_NET_DEVICES:-lo}
mpi_root=()
if [ "$(id -u)" -eq 0 ]; then mpi_root=(--allow-run-as-root); fi
if [ "$serve" = 0 ]; then
  exec timeout "${SWITCHYARD_LAUNCH_TIMEOUT:-600}" mpirun "${mpi_root[@]}" --oversubscribe \
    -np 1 "$bin" coordinator --config "$config" --requests "$requests" "${out_args[@]}" : \
    -np "$workers" "$bin" worker --config "$config"
fi
# Serving: the serve process writes its pid (the shell execs it, keeping the pid), so that a stop
# signal reaches it alone; mpirun itself would kill every process on SIGTERM and exit non-zero.
pid_file="$run_dir/serve-$$.pid"
rm -f "$pid_file"
limit=()
[ -n "${SWITCHYARD_LAUNCH_TIMEOUT:-}" ] && limit=(timeout "$SWITCHYARD_LAUNCH_TIMEOUT")
"${limit[@]}" mpirun "${mpi_root[@]}" --oversubscribe \
  -np 1 bash -c 'echo $$ > "$0"; exec "$@"' "$pid_file" "$bin" serve --config "$config" \
  "${serve_args[@]}" : -np "$workers" "$bin" worker --config "$config" &
launcher=$!
stop_serve() {
  # Once: serve's shutdown is bounded by itself (serving.shutdown_timeout_ms), and a signal that
  # interrupted the last `wait` below would make this script report 143 instead of mpirun's code.
  trap '' TERM INT
  local pid
  pid=$(cat "$pid_file" 2>/dev/null || true)
  if [ -n "$pid" ]; then
    kill -TERM "$pid" 2>/dev/null || true  # gone already: it has shut down
  else
    kill -TERM "$launcher" 2>/dev/null || true  # not started yet: end the launch
  fi
}
trap stop_serve TERM INT
while kill -0 "$launcher" 2>/dev/null; do wait "$launcher" || true; done
rc=0
wait "$launcher" || rc=$?
rm -f "$pid_file"
exit "$rc"
