#!/usr/bin/env python3
"""`switchyard serve` with worker processes (ctest labels `serving` and `mpi`).

1. MPI: `deploy/mpirun.sh --serve` (mpirun -np 1 serve : -np 2 worker, transport mpi) on a fresh
   default model, configured by a `serving:` section. Waits for /ready, then the openai SDK checks
   of serving_test.py (completions streamed and not, token-id prompt, stop string, chat): greedy
   outputs equal batch mode (`switchyard run --config` of the same cluster, i.e. the coordinator
   command) and curl's SSE framing. SIGTERM to the launcher: the serve process shuts the workers
   down, every process and mpirun exit 0. With its HTTP port taken, serve names the problem,
   shuts the workers down and the launch exits non-zero. Then a worker is SIGKILLed mid-stream:
   mpirun aborts the job, the stream ends in an error, the launch exits non-zero (no hang).
2. UCX without MPI (skipped when UCX is not built): serve and two workers started by hand over
   TCP (cluster.control_port). One completion equals batch mode; then worker rank 1 is SIGKILLed
   while a stream runs: the stream ends with an error event, /ready answers 503, and the serve
   process and the surviving worker exit non-zero within serving.worker_failure_grace_ms + slack.

Every wait has a deadline and every process runs under `timeout`; exit 77 (skip) without openai.
"""
import argparse
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import serving_test as st  # noqa: E402  (exits 77 when the openai package is missing)

HARD_LIMIT_S = 90  # `timeout` on every process this test starts
MAX_TOKENS = 12


class Launch:
    """A serve launch (any command line) whose log tells the HTTP port."""

    def __init__(self, cmd, env=None):
        self.log = tempfile.NamedTemporaryFile(prefix="serve_mpirun_", suffix=".log", delete=False)
        self.proc = subprocess.Popen(["timeout", str(HARD_LIMIT_S), *cmd], stdout=self.log,
                                     stderr=subprocess.STDOUT, env=env)
        self.port = None
        deadline = time.time() + 60
        while time.time() < deadline and self.port is None:
            if self.proc.poll() is not None:
                st.fail(f"serve exited ({self.proc.returncode}): {self.text()[-4000:]}")
            m = re.search(r"listening on http://[\d.]+:(\d+)", self.text())
            if m:
                self.port = int(m.group(1))
            time.sleep(0.1)
        if self.port is None:
            st.fail("serve did not listen within 60 s: " + self.text()[-4000:])
        self.url = f"http://127.0.0.1:{self.port}"

    def text(self):
        with open(self.log.name, errors="replace") as f:
            return f.read()

    def wait_ready(self, want=200, seconds=20):
        deadline = time.time() + seconds
        while time.time() < deadline:
            try:
                if st.raw(self, "GET", "/ready", timeout=5)[0] == want:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        st.fail(f"/ready did not answer {want} within {seconds} s")

    def wait(self, seconds):
        try:
            return self.proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            st.fail(f"did not exit within {seconds} s: " + self.text()[-4000:])

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def write_config(path, model, transport, extra=""):
    with open(path, "w") as f:
        f.write(f"max_seq_len: 512\nmax_batch_tokens: 256\ncluster:\n  model: {model}\n"
                f"  workers: 2\n  transport: {transport}\n  register_timeout_ms: 30000\n{extra}"
                f"serving:\n  port: 0\n  served_model_name: {st.MODEL}\n"
                "  worker_failure_grace_ms: 3000\n  shutdown_timeout_ms: 15000\n")


def launch_mpirun_serve(args, work, model):
    """deploy/mpirun.sh --serve: serve + 2 MPI workers, ready to take requests."""
    config = os.path.join(work, "serve_mpi.yaml")
    write_config(config, model, "mpi")
    env = dict(os.environ, SWITCHYARD_LAUNCH_TIMEOUT=str(HARD_LIMIT_S))
    launch = Launch([os.path.join(args.source, "deploy", "mpirun.sh"), "--serve", "--bin",
                     args.switchyard, "--config", config], env=env)
    try:
        launch.wait_ready()
    except Exception:
        launch.kill()
        raise
    return launch


def check_mpi(args, work, model, ref):
    launch = launch_mpirun_serve(args, work, model)
    try:
        st.check_sdk(launch, ref, MAX_TOKENS)
        st.check_curl_sse(launch)
        launch.proc.send_signal(signal.SIGTERM)  # timeout forwards it to the launcher script
        rc = launch.wait(30)
        log = launch.text()
        if rc != 0:
            st.fail(f"mpirun launch exited {rc} after SIGTERM: " + log[-4000:])
        for want in ("stopped: every worker shut down", "rank 0: shutdown", "rank 1: shutdown"):
            if want not in log:
                st.fail(f"'{want}' missing from the log: " + log[-4000:])
    finally:
        launch.kill()
    print("mpi: mpirun -np 1 serve : -np 2 worker equals batch mode; SIGTERM: all exit 0: ok")


def stream_then_kill(launch, pid):
    """Starts a long stream, SIGKILLs `pid` once tokens flow; returns the rest of the stream (or
    the connection error that ended it)."""
    body = json.dumps({"model": st.MODEL, "prompt": "Hello", "max_tokens": 400,
                       "ignore_eos": True, "temperature": 0, "stream": True})
    conn = http.client.HTTPConnection("127.0.0.1", launch.port, timeout=30)
    conn.request("POST", "/v1/completions", body=body,
                 headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 200, resp.status
    first = resp.readline()
    assert first.startswith(b"data: {"), first
    os.kill(pid, signal.SIGKILL)
    try:
        return resp.read().decode()  # bounded by the 30 s socket timeout
    except (http.client.IncompleteRead, ConnectionError) as e:
        return repr(e)


def check_mpi_port_taken(args, work, model):
    """The HTTP port is taken: serve reports it, the workers get `shutdown` (the job ends cleanly,
    no process left waiting), and the launch exits non-zero."""
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    config = os.path.join(work, "serve_busy.yaml")
    write_config(config, model, "mpi")
    with open(config) as f:
        text = f.read().replace("port: 0", f"port: {busy.getsockname()[1]}")
    with open(config, "w") as f:
        f.write(text)
    env = dict(os.environ, SWITCHYARD_LAUNCH_TIMEOUT=str(HARD_LIMIT_S))
    try:
        p = subprocess.run(["timeout", str(HARD_LIMIT_S), os.path.join(args.source, "deploy",
                            "mpirun.sh"), "--serve", "--bin", args.switchyard, "--config", config],
                           env=env, capture_output=True, text=True, timeout=HARD_LIMIT_S + 10)
    finally:
        busy.close()
    log = p.stdout + p.stderr
    if p.returncode in (0, 124):
        st.fail(f"serve with its port taken exited {p.returncode}: " + log[-4000:])
    for want in ("Address already in use", "rank 0: shutdown", "rank 1: shutdown"):
        if want not in log:
            st.fail(f"'{want}' missing from the log of a serve whose port is taken: " + log[-4000:])
    print("mpi: HTTP port taken: named, workers shut down, exit " + str(p.returncode) + ": ok")


def check_mpi_failure(args, work, model):
    """Under mpirun a dead worker ends the whole job (mpirun aborts it): the stream must end in
    an error, not a normal finish, and the launch must exit non-zero well before its limit."""
    launch = launch_mpirun_serve(args, work, model)
    try:
        pid = int(re.search(r"worker rank 1 on \S+ pid (\d+)", launch.text()).group(1))
        started = time.time()
        rest = stream_then_kill(launch, pid)
        assert '"finish_reason":"length"' not in rest, rest[-500:]
        assert '"error"' in rest or "Incomplete" in rest or "Error" in rest, rest[-500:]
        rc = launch.wait(30)
        assert rc not in (0, 124), (rc, launch.text()[-3000:])
        print(f"mpi: a killed worker: stream ended in an error, launch exit {rc} after "
              f"{time.time() - started:.1f} s: ok")
    finally:
        launch.kill()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_ucx_failure(args, work, model, ref):
    config = os.path.join(work, "serve_ucx.yaml")
    write_config(config, model, "ucx", f"  control_port: {free_port()}\n")
    env = dict(os.environ, UCX_TLS="self,sm,tcp", UCX_NET_DEVICES="lo")
    for k in [k for k in env if k.startswith(("OMPI_COMM_WORLD", "PMIX_", "SLURM_"))]:
        del env[k]  # no launcher: ranks come from the coordinator
    logs = [tempfile.NamedTemporaryFile(prefix=f"serve_worker{i}_", delete=False) for i in (0, 1)]
    workers = []
    launch = None
    try:
        # The serve process listens on the control port before the workers look for it; they
        # retry connecting until cluster.register_timeout_ms.
        serve_cmd = [args.switchyard, "serve", "--config", config]
        workers = [subprocess.Popen(["timeout", str(HARD_LIMIT_S), args.switchyard, "worker",
                                     "--config", config], stdout=log, stderr=subprocess.STDOUT,
                                    env=env) for log in logs]
        try:
            launch = Launch(serve_cmd, env=env)
        except AssertionError as e:
            worker_logs = "".join(open(log.name, errors="replace").read() for log in logs)
            if "transport 'ucx' is not built" in str(e) + worker_logs:
                print("ucx: not built, skipped")
                return
            raise
        launch.wait_ready()
        client = st.openai.OpenAI(base_url=launch.url + "/v1", api_key="none", timeout=60,
                                  max_retries=0)
        c = client.completions.create(model=st.MODEL, prompt=st.PROMPTS[0],
                                      max_tokens=MAX_TOKENS, temperature=0)
        assert c.choices[0].text == ref[0]["text"], (c.choices[0].text, ref[0]["text"])
        pid = int(re.search(r"worker rank 1 on \S+ pid (\d+)", launch.text()).group(1))
        rest = stream_then_kill(launch, pid)  # without mpirun the server stays up
        events = [e for e in rest.split("\n\n") if e]
        assert events[-1] == "data: [DONE]", events[-3:]
        error = json.loads(events[-2][len("data: "):])
        # The dead rank is named either by the coordinator (its control connection closed) or,
        # when the survivor's data plane notices first, in the survivor's reported error.
        message = error.get("error", {}).get("message", "")
        assert "worker rank 1" in message or "rank 1 is unavailable" in message, error
        launch.wait_ready(want=503, seconds=3)
        rc = launch.wait(15)
        assert rc == 1, (rc, launch.text()[-3000:])
        killed = [i for i, log in enumerate(logs) if f":{pid} " in open(log.name).read()]
        assert len(killed) == 1, killed
        survivor = workers[1 - killed[0]].wait(timeout=30)
        assert survivor not in (0, 124), survivor
        print("ucx: workers by hand equal batch mode; a killed worker: stream error, /ready 503, "
              f"serve exit {rc}, survivor exit {survivor}: ok")
    except Exception:
        if launch:
            print("serve log tail:\n" + launch.text()[-3000:])
        for log in logs:
            print(f"{log.name} tail:\n" + open(log.name, errors="replace").read()[-2000:])
        raise
    finally:
        if launch:
            launch.kill()
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait(timeout=10)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--switchyard", required=True)
    ap.add_argument("--source", default=os.path.join(os.path.dirname(__file__), "..", ".."))
    args = ap.parse_args()
    args.switchyard = os.path.abspath(args.switchyard)
    # Every process this test starts logs at INFO: it reads the port and worker pids from there.
    os.environ["SWITCHYARD_LOG_LEVEL"] = "info"
    started = time.time()
    work = tempfile.mkdtemp(prefix="serve_mpirun_test_")
    model = os.path.join(work, st.MODEL)
    subprocess.run([args.switchyard, "make-default-model", "--out", model], check=True,
                   capture_output=True, timeout=120)
    # Batch mode of the same cluster: `switchyard run --config` runs the coordinator command
    # (workers as threads here; the distributed tests show every transport gives these tokens).
    local = os.path.join(work, "batch.yaml")
    write_config(local, model, "local")
    ref = st.batch_reference(args.switchyard, local, st.PROMPTS, MAX_TOKENS)
    check_mpi(args, work, model, ref)
    check_mpi_port_taken(args, work, model)
    check_mpi_failure(args, work, model)
    check_ucx_failure(args, work, model, ref)
    print(f"serve_mpirun_test: all checks passed in {time.time() - started:.1f} s")


if __name__ == "__main__":
    main()
