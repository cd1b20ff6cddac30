#!/usr/bin/env bash
# The distributed runtime on this machine: one coordinator and N workers in one MPI world
# (mpirun MPMD: `-np 1 switchyard coordinator : -np N switchyard worker`), workers exchanging
# tokens over MPI, the coordinator driving them over TCP. Prints one JSON line per request.
#
# Usage: deploy/mpirun.sh [--workers N] [--transport mpi|ucx] [--model DIR] [--config FILE]
#                         [--requests FILE.jsonl] [--out FILE] [--dump-logits FILE.npy]
#                         [--bin PATH]
# Defaults: 2 workers, transport mpi, the built-in default model in build/default-model (written
# if missing), a small request file. --config uses that YAML as is (its cluster.workers decides N).
# Hard limit: SWITCHYARD_LAUNCH_TIMEOUT seconds (default 600) for the whole run.
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
while [ $# -gt 0 ]; do
  case "$1" in
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
if [ -z "$requests" ]; then
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
export OMPI_MCA_mpi_yield_when_idle=1 OMP_WAIT_POLICY=passive
# UCX between ranks of one machine: shared memory, loopback TCP (override to use the network).
export UCX_TLS=${UCX_TLS:-self,sm,tcp} UCX_NET_DEVICES=${UCX_NET_DEVICES:-lo}
mpi_root=()
if [ "$(id -u)" -eq 0 ]; then mpi_root=(--allow-run-as-root); fi
exec timeout "${SWITCHYARD_LAUNCH_TIMEOUT:-600}" mpirun "${mpi_root[@]}" --oversubscribe \
  -np 1 "$bin" coordinator --config "$config" --requests "$requests" "${out_args[@]}" : \
  -np "$workers" "$bin" worker --config "$config"
