"""Serving benchmark: our `serve` and `mlx_lm.server` side by side, same model folder,
same MLX, same machine, same requests.

For each server in turn: start it on the model folder, wait for it to answer, then for
each concurrency level C run C client threads that each send `--requests` streamed chat
completions one after the other (`--gen` tokens each, distinct prompts of about
`--prompt-words` words), and measure per request the time to the first streamed token
(TTFT) and the gaps between later tokens (inter-token latency), and per level the
aggregate rate (generated tokens / wall time of the level, first tokens included). Then a
multi-turn chat (each turn's prompt extends the previous turn and its reply) shows the
prefix cache: TTFT per turn. Prints a table and writes the JSON given by `--json`.

The client uses only Python's standard library (threads + http.client, SSE parsed by
hand). `--make-model DIR --config cfg.json --tokenizer-dir T` first writes a model folder
with random weights (mlx-lm's model of the config, `benches/mlx_lm_peer.py`'s values)
and T's tokenizer files.

    python3 benches/serve_bench.py --model DIR --ours 'target/release/qwen3_5 serve' \\
        --levels 1,4,16,32 --gen 128 --json out.json
"""
import argparse
import http.client
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time

WORDS = (
    "the of and to in is was for on are with as by at from his her they this that which "
    "river mountain music history science garden ocean planet engine language market "
    "winter summer village city bridge forest library museum window kitchen"
).split()


def prompt_text(i, words):
    """A distinct prompt per request (a small LCG over a word list)."""
    x = i * 2654435761 + 12345
    out = []
    for _ in range(words):
        x = (x * 6364136223846793005 + 1442695040888963407) % (1 << 64)
        out.append(WORDS[(x >> 33) % len(WORDS)])
    return f"Request {i}: " + " ".join(out)


# The model name sent in requests: mlx_lm.server loads the model a request names, so it
# is the folder both servers serve.
MODEL = ["default"]


def stream_chat(port, messages, max_tokens, timeout=600):
    """One streamed chat completion. Returns (arrival times of the token chunks, the
    reply text, usage)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    body = json.dumps(
        {
            "model": MODEL[0],
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": 0.0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    )
    started = time.perf_counter()
    conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
    resp = conn.getresponse()
    if resp.status != 200:
        raise RuntimeError(f"HTTP {resp.status}: {resp.read()[:300]!r}")
    times, text, usage = [], [], None
    while True:
        line = resp.readline()
        if not line:
            break
        line = line.strip()
        if not line.startswith(b"data:"):
            continue
        data = line[5:].strip()
        if data == b"[DONE]":
            break
        chunk = json.loads(data)
        if chunk.get("usage"):
            usage = chunk["usage"]
        for choice in chunk.get("choices", []):
            delta = choice.get("delta", {})
            # Text in whichever field the server puts it (content, reasoning_content,
            # mlx-lm's reasoning, tool calls).
            piece = "".join(
                v if isinstance(v, str) else json.dumps(v)
                for k, v in delta.items()
                if k != "role" and v
            )
            if piece:
                times.append(time.perf_counter() - started)
                text.append(piece)
    conn.close()
    return times, "".join(text), usage


def percentile(values, q):
    if not values:
        return None
    values = sorted(values)
    k = min(len(values) - 1, max(0, round(q / 100 * (len(values) - 1))))
    return values[k]


def run_level(port, concurrency, requests, gen, words, base):
    results, errors = [], []
    lock = threading.Lock()

    def worker(w):
        for r in range(requests):
            i = base + w * requests + r
            try:
                times, _, usage = stream_chat(
                    port, [{"role": "user", "content": prompt_text(i, words)}], gen
                )
                tokens = (usage or {}).get("completion_tokens") or len(times)
                with lock:
                    results.append((times, tokens))
            except Exception as e:  # noqa: BLE001 - reported in the table
                with lock:
                    errors.append(str(e))

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(concurrency)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    ttft = [t[0] for t, _ in results if t]
    gaps = [b - a for t, _ in results for a, b in zip(t, t[1:])]
    tokens = sum(n for _, n in results)
    return {
        "concurrency": concurrency,
        "requests": len(results),
        "errors": errors[:3],
        "error_count": len(errors),
        "tokens": tokens,
        "wall_s": wall,
        "aggregate_tps": tokens / wall if wall > 0 else 0.0,
        "ttft_p50_s": percentile(ttft, 50),
        "ttft_p99_s": percentile(ttft, 99),
        "itl_p50_ms": (percentile(gaps, 50) or 0) * 1000,
        "itl_p99_ms": (percentile(gaps, 99) or 0) * 1000,
    }


def run_chat(port, turns, gen, words):
    """A multi-turn chat: TTFT and prompt/cached tokens per turn."""
    messages, out = [], []
    for t in range(turns):
        messages.append({"role": "user", "content": prompt_text(10_000 + t, words)})
        times, text, usage = stream_chat(port, messages, gen)
        messages.append({"role": "assistant", "content": text})
        cached = ((usage or {}).get("prompt_tokens_details") or {}).get("cached_tokens")
        out.append(
            {
                "turn": t + 1,
                "ttft_s": times[0] if times else None,
                "prompt_tokens": (usage or {}).get("prompt_tokens"),
                "cached_tokens": cached,
            }
        )
    return out


def wait_ready(port, proc, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with status {proc.returncode}")
        try:
            # /health answers 200 once the model is loaded (503 before); a server
            # without it (404) is ready when /v1/models answers.
            for path in ("/health", "/v1/models"):
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", path)
                status = conn.getresponse().status
                conn.close()
                if status == 200:
                    return
                if status != 404:
                    break
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError("the server did not answer in time")


def health(port):
    """The /health body, or {} (no answer, or not JSON)."""
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/health")
        resp = conn.getresponse()
        body = json.loads(resp.read() or b"{}")
        conn.close()
        return body if isinstance(body, dict) else {}
    except (OSError, ValueError):
        return {}


def engine_timing(port):
    """The engine's cumulative timing from /health (ours), or None (a server without
    it), read once the engine holds no request: the clients have their last tokens before
    the engine has let the finished rows go (and saved their states), and that work
    belongs to the level that made it."""
    deadline = time.perf_counter() + 10
    while time.perf_counter() < deadline:
        body = health(port)
        if (body.get("requests") or {}).get("active", 0) == 0:
            break
        time.sleep(0.01)
    return health(port).get("engine")


def timing_delta(before, after):
    """What the engine did during one level: the difference of two /health readings."""
    if not before or not after:
        return None
    d = {k: round(after[k] - before[k], 3) for k in after if k in before}
    steps = d.get("steps") or 0
    d["mean_batch"] = round(d.get("step_rows", 0) / steps, 2) if steps else None
    d["ms_per_step"] = round(1000 * d.get("step_s", 0) / steps, 2) if steps else None
    return d


def bench_server(name, command, port, args, log_dir):
    log = open(os.path.join(log_dir, f"{name}.log"), "w")
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_ready(port, proc, args.start_timeout)
        # Warm-up, untimed: compile kernels, fill allocator caches, and meet every batch
        # size up to the highest level once (MLX builds some kernels per shape).
        run_level(port, max(args.levels), 1, args.warmup_gen, args.prompt_words, 900_000)
        levels = []
        for i, c in enumerate(args.levels):
            before = engine_timing(port)
            row = run_level(port, c, args.requests, args.gen, args.prompt_words, 1000 * (i + 1))
            row["engine"] = timing_delta(before, engine_timing(port))
            print(
                f"  {name} c={c}: {row['aggregate_tps']:.0f} tok/s, errors {row['errors']}, "
                f"engine {row['engine']}",
                file=sys.stderr,
            )
            levels.append(row)
        chat = run_chat(port, args.turns, args.chat_gen, args.prompt_words)
        return {"command": command, "levels": levels, "chat": chat}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def make_model(dir, config_path, tokenizer_dir, dtype):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm_peer import DTYPES, build_model

    with open(config_path) as f:
        config = json.load(f)
    model = build_model(config, DTYPES[dtype], None, 0)
    os.makedirs(dir, exist_ok=True)
    weights = dict(tree_flatten(model.parameters()))
    mx.save_safetensors(os.path.join(dir, "model.safetensors"), weights, {"format": "mlx"})
    with open(os.path.join(dir, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        src = os.path.join(tokenizer_dir, name)
        if os.path.exists(src):
            shutil.copy(src, os.path.join(dir, name))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="model folder (both servers load it)")
    p.add_argument("--ours", required=True, help="our server command, e.g. 'qwen3_5 serve'")
    p.add_argument("--ours-args", default="", help="extra flags for our server")
    p.add_argument("--peer", default=f"{sys.executable} -m mlx_lm.server")
    p.add_argument("--peer-args", default="", help="extra flags for mlx_lm.server")
    p.add_argument("--skip-peer", action="store_true")
    p.add_argument("--skip-ours", action="store_true")
    p.add_argument("--levels", default="1,4,16,32")
    p.add_argument("--requests", type=int, default=2, help="requests per client thread")
    p.add_argument("--gen", type=int, default=128)
    p.add_argument("--warmup-gen", type=int, default=64,
                   help="tokens per request of the untimed warm-up at the highest level")
    p.add_argument("--prompt-words", type=int, default=60)
    p.add_argument("--turns", type=int, default=4)
    p.add_argument("--chat-gen", type=int, default=64)
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--start-timeout", type=float, default=600)
    p.add_argument("--json", help="write the results here")
    p.add_argument("--log-dir", default=".")
    p.add_argument("--make-model", action="store_true", help="write --model first")
    p.add_argument("--config", help="config.json of the shapes (with --make-model)")
    p.add_argument("--tokenizer-dir", help="tokenizer files (with --make-model)")
    p.add_argument("--dtype", default="bfloat16")
    args = p.parse_args()
    args.levels = [int(x) for x in args.levels.split(",")]
    MODEL[0] = args.model
    if args.make_model:
        make_model(args.model, args.config, args.tokenizer_dir, args.dtype)
    servers = []
    if not args.skip_ours:
        servers.append(
        (
            "ours",
            args.ours.split()
            + ["--model", args.model, "--port", str(args.port)]
            + args.ours_args.split(),
        ))
    if not args.skip_peer:
        servers.append(
            (
                "mlx_lm.server",
                args.peer.split()
                + ["--model", args.model, "--port", str(args.port + 1)]
                + args.peer_args.split(),
            )
        )
    report = {"machine": platform.node(), "levels": args.levels, "gen": args.gen}
    for name, command in servers:
        port = int(command[command.index("--port") + 1])
        report[name] = bench_server(name, command, port, args, args.log_dir)
    print(f"\nstreamed chat, {args.gen} tokens per request, {args.requests} requests per client")
    print(
        "| server | concurrency | aggregate tok/s | TTFT p50 / p99 (s) | ITL p50 / p99 (ms) | errors |"
    )
    print("|---|---:|---:|---|---|---:|")
    for name, _ in servers:
        for r in report[name]["levels"]:
            print(
                f"| {name} | {r['concurrency']} | {r['aggregate_tps']:.0f} | "
                f"{r['ttft_p50_s'] or 0:.3f} / {r['ttft_p99_s'] or 0:.3f} | "
                f"{r['itl_p50_ms']:.1f} / {r['itl_p99_ms']:.1f} | {r['error_count']} |"
            )
    timed = [(n, r) for n, _ in servers for r in report[n]["levels"] if r.get("engine")]
    if timed:
        print("\nengine thread per level (GET /health): seconds in prefill chunks, joins, "
              "decode steps (count, mean batch, ms per step), leaves")
        print("| server | concurrency | wall (s) | prefill (s) | joins (s) | steps (s) | "
              "steps | mean batch | ms / step | leaves (s) |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for n, r in timed:
            e = r["engine"]
            print(
                f"| {n} | {r['concurrency']} | {r['wall_s']:.2f} | {e['prefill_s']:.2f} | "
                f"{e['join_s']:.2f} | {e['step_s']:.2f} | {e['steps']:.0f} | "
                f"{e['mean_batch']} | {e['ms_per_step']} | {e['leave_s']:.2f} |"
            )
    print("\nmulti-turn chat: TTFT per turn (s), cached / prompt tokens")
    for name, _ in servers:
        turns = report[name]["chat"]
        cells = [
            f"{t['ttft_s'] or 0:.3f} ({t['cached_tokens']}/{t['prompt_tokens']})" for t in turns
        ]
        print(f"| {name} | " + " | ".join(cells) + " |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
