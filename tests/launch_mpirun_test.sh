#!/usr/bin/env bash
# Launch test (label mpi): deploy/mpirun.sh runs the coordinator and 1, 2, 4 worker processes
# under mpirun on the HF fixtures of all three families, with the workers' data plane on MPI and
# on UCX (ranks and rendezvous from the coordinator); EPLB placement with a replica slot per
# worker. The greedy tokens must equal the single-process `switchyard run`, the logits of every
# step those of `switchyard generate --dump-logits` within 1e-5 relative. Then a worker is SIGKILLed mid-run: the coordinator must name the rank, write an error
# line for every unfinished request and exit non-zero, all within a hard time limit.
# Usage: tests/launch_mpirun_test.sh PATH/TO/switchyard
set -euo pipefail
bin=$(realpath "$1")
src=${SWITCHYARD_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export SWITCHYARD_LAUNCH_TIMEOUT=120 SWITCHYARD_LOG_LEVEL=warn
fail() { echo "launch_mpirun_test: FAIL: $*" >&2; exit 1; }

cat > "$work/req.jsonl" <<'JSONL'
{"id": "p0", "prompt_ids": [1, 2, 3, 4, 5], "max_tokens": 6, "ignore_eos": true}
{"id": "p1", "prompt_ids": [9, 8, 7], "max_tokens": 6, "ignore_eos": true}
{"id": "p2", "prompt_ids": [100, 3, 50, 21, 77, 13, 1, 2], "max_tokens": 6, "ignore_eos": true}
{"id": "p3", "prompt_ids": [42], "max_tokens": 6, "ignore_eos": true}
JSONL
# The same prompts for `switchyard generate --dump-logits` (the single-process reference).
ref_prompts=(--prompt-ids 1,2,3,4,5 --prompt-ids 9,8,7 --prompt-ids 100,3,50,21,77,13,1,2 --prompt-ids 42)
# Logits of every (request, step) within 1e-5 of the largest reference logit, relative.
compare_logits() {
  python3 - "$1" "$2" <<'PY'
import sys, numpy as np
ref, got = np.load(sys.argv[1]), np.load(sys.argv[2])
assert ref.shape == got.shape, (ref.shape, got.shape)
assert np.isfinite(ref).all() and np.isfinite(got).all(), "missing (NaN) logits rows"
worst = 0.0
for p in range(ref.shape[0]):
    for s in range(ref.shape[1]):
        worst = max(worst, float(np.max(np.abs(got[p, s] - ref[p, s])) / np.max(np.abs(ref[p, s]))))
print("max relative logit difference %.2e" % worst)
sys.exit(0 if worst <= 1e-5 else 1)
PY
}
tokens() { python3 -c 'import json,sys; [print(json.loads(l)["id"], json.loads(l)["tokens"]) for l in open(sys.argv[1])]' "$1"; }

runs=0
ucx_built=1
for fixture in deepseek_v3_qlora deepseek_v3_noqlora qwen3_moe qwen3_moe_tied mixtral; do
  model="$src/tests/oracle/fixtures/$fixture"
  "$bin" run --model "$model" --requests "$work/req.jsonl" --out "$work/ref.jsonl" 2>/dev/null
  "$bin" generate --model "$model" "${ref_prompts[@]}" --max-new-tokens 6 --ignore-eos \
    --dump-logits "$work/ref.npy" >/dev/null 2>&1
  for transport in mpi ucx; do
    for n in 1 2 4; do
      # Every family with 1, 2 and 4 workers on both transports; the other fixtures with 2 on mpi.
      case "$fixture:$transport:$n" in
        deepseek_v3_qlora:*|qwen3_moe:*|mixtral:*|*:mpi:2) ;;
        *) continue ;;
      esac
      timeout 150 "$src/deploy/mpirun.sh" --bin "$bin" --model "$model" --workers "$n" \
        --transport "$transport" --requests "$work/req.jsonl" --out "$work/dist.jsonl" \
        --dump-logits "$work/dist.npy" \
        2>"$work/log" || {
        if [ "$transport" = ucx ] && grep -q "transport 'ucx' is not built" "$work/log"; then
          echo "launch_mpirun_test: ucx not built, skipping its runs"
          ucx_built=0
          continue
        fi
        cat "$work/log" >&2
        fail "$fixture with $n workers on $transport exited non-zero"
      }
      diff <(tokens "$work/ref.jsonl") <(tokens "$work/dist.jsonl") >&2 ||
        fail "$fixture with $n workers on $transport: tokens differ from the single-process engine"
      compare_logits "$work/ref.npy" "$work/dist.npy" >"$work/cmp" ||
        fail "$fixture with $n workers on $transport: $(cat "$work/cmp")"
      runs=$((runs + 1))
    done
  done
done
echo "launch_mpirun_test: $runs distributed runs reproduce the single-process tokens and logits"

# UCX without MPI: the coordinator and two workers started by hand; ranks come from the
# coordinator, the workers meet through its rendezvous.
if [ "$ucx_built" = 1 ]; then
  model="$src/tests/oracle/fixtures/qwen3_moe"
  "$bin" run --model "$model" --requests "$work/req.jsonl" --out "$work/ref.jsonl" 2>/dev/null
  export UCX_TLS=self,sm,tcp UCX_NET_DEVICES=lo
  # The control port must be fixed up front (no MPI to broadcast it): one that binds now, below
  # the ephemeral range; if something takes it before the coordinator listens, try another.
  for attempt in 1 2 3; do
    port=$(python3 -c '
import random, socket
for _ in range(500):
    p = random.randint(20000, 32000)
    with socket.socket() as s:
        try:
            s.bind(("0.0.0.0", p))
        except OSError:
            continue
    print(p)
    break')
    cat > "$work/ucx.yaml" <<YAML
cluster:
  model: $model
  workers: 2
  transport: ucx
  control_port: $port
  register_timeout_ms: 30000
YAML
    timeout 60 "$bin" coordinator --config "$work/ucx.yaml" --requests "$work/req.jsonl" \
      --out "$work/ucx.jsonl" 2>"$work/ucx.log" &
    coord=$!
    timeout 60 "$bin" worker --config "$work/ucx.yaml" 2>>"$work/ucx.log" &
    w1=$!
    timeout 60 "$bin" worker --config "$work/ucx.yaml" 2>>"$work/ucx.log" &
    w2=$!
    ok=1
    wait "$coord" || { ok=0; kill "$w1" "$w2" 2>/dev/null || true; }
    wait "$w1" || ok=0
    wait "$w2" || ok=0
    [ "$ok" = 1 ] && break
    grep -q "Address already in use" "$work/ucx.log" && [ "$attempt" -lt 3 ] && continue
    cat "$work/ucx.log" >&2
    fail "ucx run without MPI failed"
  done
  diff <(tokens "$work/ref.jsonl") <(tokens "$work/ucx.jsonl") >&2 ||
    fail "ucx without MPI: tokens differ from the single-process engine"
  echo "launch_mpirun_test: ucx without MPI (workers ranked by the coordinator) reproduces the engine"
fi

# Failure: SIGKILL worker rank 1 while the batch runs.
model="$work/default-model"
"$bin" make-default-model --out "$model" >/dev/null
: > "$work/long.jsonl"
for i in 0 1 2 3; do
  echo "{\"id\": \"r$i\", \"prompt_ids\": [1, 2, 3, $i], \"max_tokens\": 2000, \"ignore_eos\": true}" >> "$work/long.jsonl"
done
cat > "$work/cluster.yaml" <<YAML
max_seq_len: 4096
cluster:
  model: $model
  workers: 2
  transport: mpi
  placement: contiguous
  heartbeat_timeout_ms: 5000
  step_timeout_ms: 10000
YAML
start=$(date +%s)
SWITCHYARD_LOG_LEVEL=info timeout 120 "$src/deploy/mpirun.sh" --bin "$bin" --config "$work/cluster.yaml" \
  --requests "$work/long.jsonl" --out "$work/fail.jsonl" 2>"$work/fail.log" &
launcher=$!
pid=""
for _ in $(seq 1 600); do
  pid=$(sed -n 's/.*worker rank 1 on .* pid \([0-9]*\):.*/\1/p' "$work/fail.log" | head -1)
  [ -n "$pid" ] && break
  sleep 0.1
done
[ -n "$pid" ] || { kill "$launcher" 2>/dev/null; cat "$work/fail.log" >&2; fail "worker rank 1 never became ready"; }
sleep 1
kill -KILL "$pid"
rc=0
wait "$launcher" || rc=$?
elapsed=$(( $(date +%s) - start ))
[ "$rc" -ne 0 ] || fail "the run exited 0 after a worker was killed"
[ "$rc" -ne 124 ] || { cat "$work/fail.log" >&2; fail "the run hung until the timeout"; }
# Named either as the failed worker (its control connection closed first) or as the dead peer in
# a survivor's error (the dispatcher's shared-memory path sees the exited process first).
grep -qE "worker rank 1 .*failed|rank 1 is unavailable" "$work/fail.log" ||
  { cat "$work/fail.log" >&2; fail "the coordinator did not name the dead rank"; }
[ "$(grep -c '"error"' "$work/fail.jsonl")" -eq 4 ] ||
  { cat "$work/fail.jsonl" >&2; fail "expected an error line for each of the 4 unfinished requests"; }
grep "switchyard: error" "$work/fail.log" | head -2
echo "launch_mpirun_test: killed worker rank 1: exit $rc after ${elapsed}s, named, 4 requests failed"
