#!/usr/bin/env python3
"""End-to-end test of `switchyard serve` (ctest label `serving`).

Starts the server on an ephemeral port with 4 local workers over a fresh default model and
drives it with real clients: the official `openai` SDK (completions and chat, streamed and not;
greedy outputs must equal `switchyard run --config` batch mode), curl (SSE framing), raw HTTP
(error cases), 64 concurrent streaming clients (all correct, metric counters add up), a client
that disconnects mid-stream (the running-requests gauge returns to 0), and a bounded load test
that prints throughput and TTFT / ITL / E2E percentiles. Every wait has a deadline; the server is
killed on exit. Exit 77 (ctest skip) when the `openai` package is missing.
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
import threading
import time

try:
    import openai
except ImportError:
    print("SKIP: the openai package is not installed (scripts/install_deps.sh)")
    sys.exit(77)

MODEL = "tiny-moe"
PROMPTS = ["Hello world", "The quick brown fox", "Switchyard serves", "1 2 3 4"]


def fail(msg):
    raise AssertionError(msg)


class Server:
    def __init__(self, binary, config, extra=()):
        self.log = tempfile.NamedTemporaryFile(prefix="serve_", suffix=".log", delete=False)
        self.proc = subprocess.Popen(
            [binary, "serve", "--config", config, "--port", "0", "--served-model-name", MODEL,
             *extra], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        self.port = None
        while time.time() < deadline and self.port is None:
            if self.proc.poll() is not None:
                fail("server exited: " + open(self.log.name).read())
            m = re.search(r"listening on http://[\d.]+:(\d+)", open(self.log.name).read())
            if m:
                self.port = int(m.group(1))
            time.sleep(0.1)
        if self.port is None:
            fail("server did not listen within 60 s")
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def raw(server, method, path, body=None, headers=None, timeout=30):
    c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    c.request(method, path, body=body, headers=headers or {"Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, dict(r.getheaders()), data


def metrics(server):
    _, _, body = raw(server, "GET", "/metrics")
    out = {}
    for line in body.decode().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, value = line.rsplit(" ", 1)
        out[name] = float(value)
    return out


def metric(m, name, **labels):
    lab = ",".join([f'model_name="{MODEL}"'] + [f'{k}="{v}"' for k, v in labels.items()])
    return m.get(f"switchyard:{name}{{{lab}}}", 0.0)


def batch_reference(binary, config, prompts, max_tokens):
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
        for i, p in enumerate(prompts):
            f.write(json.dumps({"id": str(i), "prompt": p, "max_tokens": max_tokens,
                                "temperature": 0}) + "\n")
    out = subprocess.run([binary, "run", "--config", config, "--requests", f.name],
                         capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        fail("batch run failed: " + out.stderr)
    res = {}
    for line in out.stdout.splitlines():
        if line.strip().startswith("{"):
            j = json.loads(line)
            res[int(j["id"])] = j
    return [res[i] for i in range(len(prompts))]


def check_sdk(server, ref, max_tokens):
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="none", timeout=60, max_retries=0)
    models = client.models.list()
    assert [m.id for m in models.data] == [MODEL], models
    for p, r in zip(PROMPTS, ref):
        c = client.completions.create(model=MODEL, prompt=p, max_tokens=max_tokens, temperature=0)
        assert c.choices[0].text == r["text"], (p, c.choices[0].text, r["text"])
        assert c.choices[0].finish_reason == r["finish_reason"]
        assert c.usage.prompt_tokens == r["prompt_tokens"]
        assert c.usage.completion_tokens == r["completion_tokens"]
        assert c.usage.total_tokens == r["prompt_tokens"] + r["completion_tokens"]
        text, finish = "", None
        for chunk in client.completions.create(model=MODEL, prompt=p, max_tokens=max_tokens,
                                               temperature=0, stream=True):
            text += chunk.choices[0].text
            finish = chunk.choices[0].finish_reason or finish
        assert text == r["text"] and finish == r["finish_reason"], (text, r["text"])
    # Token-id prompts equal text prompts.
    ids = ref[0]["tokens"]
    c = client.completions.create(model=MODEL, prompt=[1, 2, 3], max_tokens=4, temperature=0)
    assert c.usage.prompt_tokens == 3 and c.usage.completion_tokens >= 1
    # Stop sequence: the text ends before the first occurrence, the stop text is not included.
    full = ref[0]["text"]
    if len(full) >= 4:
        stop = full[2:4]
        c = client.completions.create(model=MODEL, prompt=PROMPTS[0], max_tokens=max_tokens,
                                      temperature=0, stop=[stop])
        assert c.choices[0].text == full[:full.find(stop)], (c.choices[0].text, full, stop)
        assert c.choices[0].finish_reason == "stop"
    # Chat, non-streamed and streamed, greedy: the same text both ways, with usage.
    msgs = [{"role": "user", "content": "Tell me about MoE"}]
    chat = client.chat.completions.create(model=MODEL, messages=msgs, max_tokens=8, temperature=0)
    assert chat.choices[0].message.role == "assistant"
    assert chat.usage.completion_tokens == 8 or chat.choices[0].finish_reason == "stop"
    streamed, usage = "", None
    for chunk in client.chat.completions.create(model=MODEL, messages=msgs, max_tokens=8,
                                                temperature=0, stream=True,
                                                stream_options={"include_usage": True}):
        if chunk.choices:
            streamed += chunk.choices[0].delta.content or ""
        if chunk.usage:
            usage = chunk.usage
    assert streamed == chat.choices[0].message.content, (streamed, chat.choices[0].message.content)
    assert usage is not None and usage.completion_tokens == chat.usage.completion_tokens
    print("sdk: completions + chat, streamed and not, equal to batch mode: ok")


def check_curl_sse(server):
    body = json.dumps({"model": MODEL, "prompt": "Hello", "max_tokens": 5, "temperature": 0,
                       "stream": True})
    out = subprocess.run(["curl", "-sS", "-N", "-m", "30", "-D", "-", server.url + "/v1/completions",
                          "-H", "Content-Type: application/json", "-d", body],
                         capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr
    head, _, sse = out.stdout.decode().partition("\r\n\r\n")
    assert "text/event-stream" in head.lower(), head
    events = sse.split("\n\n")
    assert events[-1] == "", "stream must end with a blank line"
    events = events[:-1]
    assert events[-1] == "data: [DONE]", events[-1]
    for e in events[:-1]:
        assert e.startswith("data: ") and "\n" not in e, repr(e)
        j = json.loads(e[len("data: "):])
        assert j["object"] == "text_completion" and j["model"] == MODEL
    assert json.loads(events[-2][6:])["choices"][0]["finish_reason"] == "length"
    print(f"curl: SSE framing of {len(events)} events: ok")


def check_errors(server):
    def expect(status, body, param=None, path="/v1/completions", code=None):
        s, headers, data = raw(server, "POST", path, body)
        assert s == status, (s, body, data)
        err = json.loads(data)["error"]
        assert set(err) == {"message", "type", "param", "code"} and err["message"], err
        if param is not None:
            assert err["param"] == param, err
        if code is not None:
            assert err["code"] == code, err
        return headers
    expect(400, "{not json")
    expect(400, "[1, 2]")
    expect(400, json.dumps({"model": MODEL}), "prompt")
    expect(400, json.dumps({"model": MODEL, "prompt": 5}), "prompt")
    expect(400, json.dumps({"model": MODEL, "prompt": "a", "max_tokens": "3"}), "max_tokens")
    expect(400, json.dumps({"model": MODEL, "prompt": "a", "max_tokens": -1}), "max_tokens")
    expect(400, json.dumps({"model": MODEL, "prompt": "a", "temperature": 9}), "temperature")
    expect(400, json.dumps({"model": MODEL, "prompt": "a", "n": 2}), "n")
    expect(400, json.dumps({"model": MODEL, "prompt": "a", "stream": "yes"}), "stream")
    expect(400, json.dumps({"model": MODEL, "prompt": [1, 2, 10**9]}), "prompt")
    expect(404, json.dumps({"model": "no-such-model", "prompt": "a"}), "model",
           code="model_not_found")
    expect(400, json.dumps({"model": MODEL, "prompt": "word " * 600, "max_tokens": 4}),
           code="context_length_exceeded")
    # A body over the limit is refused from its Content-Length, before it is read.
    s = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: 100000000\r\n\r\n{")
    reply = b""
    while b"\r\n\r\n" not in reply:
        chunk = s.recv(4096)
        if not chunk:
            break
        reply += chunk
    s.close()
    assert reply.startswith(b"HTTP/1.1 413"), reply[:100]
    # A client that sends the whole oversize body still reads the 413 (the server drains it).
    expect(413, json.dumps({"model": MODEL, "prompt": "x" * (9 << 20)}))
    expect(400, json.dumps({"model": MODEL, "messages": "hi"}), "messages",
           path="/v1/chat/completions")
    s, _, _ = raw(server, "GET", "/v1/nothing")
    assert s == 404
    s, _, _ = raw(server, "GET", "/v1/completions")
    assert s == 405
    for path in ("/health", "/ready"):
        s, _, _ = raw(server, "GET", path)
        assert s == 200, path
    print("errors: status codes and OpenAI error bodies: ok")


def stream_once(url, prompt, max_tokens, result, i):
    client = openai.OpenAI(base_url=url + "/v1", api_key="none", timeout=120, max_retries=0)
    t0 = time.perf_counter()
    times, text, usage = [], "", None
    try:
        for chunk in client.completions.create(model=MODEL, prompt=prompt, max_tokens=max_tokens,
                                               temperature=0, stream=True,
                                               stream_options={"include_usage": True}):
            if chunk.choices:
                text += chunk.choices[0].text
                times.append(time.perf_counter())
            if chunk.usage:
                usage = chunk.usage
        result[i] = {"text": text, "usage": usage, "t0": t0, "times": times,
                     "end": time.perf_counter()}
    except Exception as e:  # recorded and reported by the caller
        result[i] = {"error": repr(e)}


def check_concurrency(server, ref, max_tokens, clients=64):
    before = metrics(server)
    result = [None] * clients
    threads = [threading.Thread(target=stream_once,
                                args=(server.url, PROMPTS[i % len(PROMPTS)], max_tokens, result, i))
               for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    assert not any(t.is_alive() for t in threads), "clients still running after 180 s"
    prompt_sum = gen_sum = 0
    for i, r in enumerate(result):
        assert r is not None and "error" not in r, (i, r)
        want = ref[i % len(PROMPTS)]
        assert r["text"] == want["text"], (i, r["text"], want["text"])
        prompt_sum += r["usage"].prompt_tokens
        gen_sum += r["usage"].completion_tokens
    after = metrics(server)
    d = lambda name, **kw: metric(after, name, **kw) - metric(before, name, **kw)
    assert d("prompt_tokens_total") == prompt_sum, (d("prompt_tokens_total"), prompt_sum)
    assert d("generation_tokens_total") == gen_sum, (d("generation_tokens_total"), gen_sum)
    finished = sum(d("request_success_total", finished_reason=r)
                   for r in ("stop", "length", "abort", "error"))
    assert finished == clients, finished
    assert d("e2e_request_latency_seconds_count") == clients
    assert metric(after, "num_requests_running") == 0
    # Expert-load gauges come from the workers' per-expert counts (many steps ran by now).
    balance = [v for k, v in after.items() if k.startswith("switchyard:expert_balancedness{")]
    assert balance and all(v >= 1.0 for v in balance), balance
    print(f"concurrency: {clients} streaming clients correct; counters add up "
          f"({prompt_sum} prompt, {gen_sum} generated tokens): ok")


def check_disconnect(server):
    before = metrics(server)
    body = json.dumps({"model": MODEL, "prompt": "Hello", "max_tokens": 400, "temperature": 0,
                       "ignore_eos": True, "stream": True})
    s = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    s.sendall((f"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\n\r\n{body}").encode())
    got = b""
    while got.count(b"data: ") < 3:
        got += s.recv(4096)
    deadline = time.time() + 10
    while metric(metrics(server), "num_requests_running") < 1:
        assert time.time() < deadline, "request never counted as running"
        time.sleep(0.05)
    s.close()
    deadline = time.time() + 15
    while True:
        m = metrics(server)
        if metric(m, "num_requests_running") == 0:
            break
        assert time.time() < deadline, "running-requests gauge did not return to 0 in 15 s"
        time.sleep(0.1)
    aborted = (metric(m, "request_success_total", finished_reason="abort") -
               metric(before, "request_success_total", finished_reason="abort"))
    assert aborted == 1, aborted
    generated = (metric(m, "generation_tokens_total") - metric(before, "generation_tokens_total"))
    assert generated < 400, generated
    print(f"disconnect: cancelled after {int(generated)} of 400 tokens, gauge back to 0: ok")


def pct(values, q):
    v = sorted(values)
    return v[min(len(v) - 1, int(q / 100.0 * len(v)))] if v else float("nan")


def load_test(server, seconds, clients, max_tokens):
    result, t_end = [], time.time() + seconds
    lock = threading.Lock()

    def worker(k):
        i = 0
        while time.time() < t_end:
            r = [None]
            stream_once(server.url, PROMPTS[(k + i) % len(PROMPTS)], max_tokens, r, 0)
            with lock:
                result.append(r[0])
            i += 1
    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + 120)
    wall = time.perf_counter() - t0
    errors = [r for r in result if "error" in r]
    assert not errors, errors[:3]
    ttft = [r["times"][0] - r["t0"] for r in result if r["times"]]
    itl = [b - a for r in result for a, b in zip(r["times"], r["times"][1:])]
    e2e = [r["end"] - r["t0"] for r in result]
    toks = sum(r["usage"].completion_tokens for r in result)
    print(f"load: {clients} clients, {len(result)} requests in {wall:.1f} s: "
          f"{len(result) / wall:.2f} req/s, {toks / wall:.1f} generated tok/s")
    for name, v in (("TTFT", ttft), ("ITL", itl), ("E2E", e2e)):
        print(f"load: {name} p50 {pct(v, 50) * 1e3:.1f} ms, p90 {pct(v, 90) * 1e3:.1f} ms, "
              f"p99 {pct(v, 99) * 1e3:.1f} ms")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--switchyard", required=True)
    ap.add_argument("--load-seconds", type=float, default=10)
    ap.add_argument("--load-clients", type=int, default=16)
    ap.add_argument("--clients", type=int, default=64)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="serving_test_")
    model = os.path.join(work, MODEL)
    subprocess.run([args.switchyard, "make-default-model", "--out", model], check=True,
                   capture_output=True, timeout=120)
    config = os.path.join(work, "cluster.yaml")
    with open(config, "w") as f:
        f.write(f"max_seq_len: 512\nmax_batch_tokens: 256\ncluster:\n  model: {model}\n"
                "  workers: 4\n  transport: local\n")
    max_tokens = 12
    ref = batch_reference(args.switchyard, config, PROMPTS, max_tokens)
    server = Server(args.switchyard, config)
    try:
        check_sdk(server, ref, max_tokens)
        check_curl_sse(server)
        check_errors(server)
        check_concurrency(server, ref, max_tokens, args.clients)
        check_disconnect(server)
        if args.load_seconds > 0:
            load_test(server, args.load_seconds, args.load_clients, 32)
    except Exception:
        print("server log tail:\n" + open(server.log.name).read()[-4000:])
        raise
    finally:
        server.stop()
    print("serving_test: all checks passed")


if __name__ == "__main__":
    main()
