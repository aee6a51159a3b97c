"""Load test of an OpenAI-compatible completions server (compress serve, or llama-server).

Bounded loops on 127.0.0.1: CLIENTS concurrent clients each send REQUESTS requests one after
the other (random prompt of token ids, random max_tokens, ignore_eos so every request that runs
to its end produces exactly max_tokens tokens). With --disconnect P, a request is, with
probability P, dropped by its client after a random number of streamed tokens: that one is
expected to end early and the server must free its KV blocks.

Checks (exit status 1 when one fails):
  * every request that was not dropped succeeds: HTTP 200, max_tokens tokens, `[DONE]`;
  * afterwards the server's KV blocks in use, running and waiting sequences return to 0
    (compress serve's /metrics);
  * with --expect-preemption, the server preempted at least once (more work than KV blocks).
Reports requests/s, generated tokens/s, p50/p99 request latency and time to first token.

Standard library only (asyncio streams, HTTP/1.1 by hand), so it runs on any Python 3.9+.

Usage:
  python bench/load.py --url http://127.0.0.1:8000 [--clients 64] [--requests 500]
      [--prompt-len 4:64] [--max-tokens 4:48] [--disconnect 0.1] [--vocab 4096]
      [--no-stream] [--expect-preemption] [--metrics] [--json OUT] [--seed 0]
"""

import argparse
import asyncio
import json
import random
import sys
import time
import urllib.request


def span(text):
    a, _, b = text.partition(":")
    return int(a), int(b or a)


def percentile(values, q):
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, int(round(q / 100 * (len(v) - 1))))]


async def read_chunked(reader):
    """Yields the decoded pieces of a chunked HTTP body."""
    while True:
        size = int((await reader.readline()).strip() or b"0", 16)
        if size == 0:
            return
        data = await reader.readexactly(size + 2)
        yield data[:-2]


async def one_request(host, port, body, drop_after, stream, key):
    """Sends one completion; returns a dict with ok, tokens, ttft, latency, dropped, error."""
    t0 = time.perf_counter()
    reader, writer = await asyncio.open_connection(host, port)
    payload = json.dumps(body).encode()
    auth = f"Authorization: Bearer {key}\r\n" if key else ""
    writer.write((f"POST /v1/completions HTTP/1.1\r\nHost: {host}\r\n"
                  f"Content-Type: application/json\r\n{auth}Content-Length: {len(payload)}\r\n"
                  "Connection: close\r\n\r\n").encode() + payload)
    await writer.drain()
    result = {"ok": False, "tokens": 0, "ttft": None, "dropped": False, "error": None}
    try:
        status = int((await reader.readline()).split()[1])
        headers = {}
        while (line := await reader.readline()) not in (b"\r\n", b""):
            k, _, v = line.decode().partition(":")
            headers[k.strip().lower()] = v.strip()
        if status != 200:
            result["error"] = f"HTTP {status}: {(await reader.read())[:200]!r}"
            return result
        if not stream:
            raw = await reader.read()
            if headers.get("transfer-encoding") == "chunked":
                parts = [p async for p in read_chunked(_Bytes(raw))]
                raw = b"".join(parts)
            resp = json.loads(raw)
            result["tokens"] = resp["usage"]["completion_tokens"]
            result["ok"] = result["tokens"] == body["max_tokens"]
            if not result["ok"]:
                result["error"] = f"{result['tokens']} tokens, wanted {body['max_tokens']}"
            return result
        buf, done, finish = b"", False, None
        async for piece in read_chunked(reader):
            buf += piece
            while b"\n\n" in buf:
                event, buf = buf.split(b"\n\n", 1)
                data = event.decode().removeprefix("data: ")
                if data == "[DONE]":
                    done = True
                    continue
                choice = json.loads(data)["choices"][0]
                # compress sends token_ids; otherwise one chunk per token (llama-server).
                n = len(choice["token_ids"]) if "token_ids" in choice else int(bool(choice.get("text")))
                if n and result["ttft"] is None:
                    result["ttft"] = time.perf_counter() - t0
                result["tokens"] += n
                finish = choice.get("finish_reason") or finish
                if drop_after is not None and result["tokens"] >= drop_after:
                    result["dropped"] = True
                    return result
        result["ok"] = done and result["tokens"] == body["max_tokens"] and finish == "length"
        if not result["ok"]:
            result["error"] = f"done={done} tokens={result['tokens']}/{body['max_tokens']} finish={finish}"
        return result
    except (ConnectionError, asyncio.IncompleteReadError, ValueError, KeyError) as e:
        result["error"] = f"{type(e).__name__}: {e}"
        return result
    finally:
        result["latency"] = time.perf_counter() - t0
        writer.close()


class _Bytes:
    """An in-memory reader with the two methods read_chunked needs."""

    def __init__(self, data):
        self.data = data

    async def readline(self):
        line, _, self.data = self.data.partition(b"\r\n")
        return line + b"\r\n"

    async def readexactly(self, n):
        out, self.data = self.data[:n], self.data[n:]
        return out


def metrics(url):
    text = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and "{" not in line:
            name, _, value = line.partition(" ")
            out[name] = float(value)
    return out


async def client(i, args, host, port, results):
    rng = random.Random(args.seed * 1000 + i)
    for _ in range(args.requests):
        plen, gen = rng.randint(*args.prompt_len), rng.randint(*args.max_tokens)
        prompt = [rng.randrange(3, args.vocab) for _ in range(plen)]
        drop = rng.randint(1, max(1, gen - 1)) if args.stream and rng.random() < args.disconnect else None
        body = {"prompt": prompt, "max_tokens": gen, "temperature": 0, "stream": args.stream,
                "ignore_eos": True}
        if args.model:
            body["model"] = args.model
        try:
            r = await asyncio.wait_for(one_request(host, port, body, drop, args.stream, args.api_key),
                                       args.timeout)
        except asyncio.TimeoutError:
            r = {"ok": False, "tokens": 0, "ttft": None, "dropped": False,
                 "error": f"no answer in {args.timeout} s", "latency": args.timeout}
        results.append(r)


async def main(args):
    host, _, port = args.url.removeprefix("http://").partition(":")
    port = int(port.rstrip("/"))
    before = metrics(args.url) if args.metrics else {}
    results = []
    t0 = time.perf_counter()
    await asyncio.gather(*(client(i, args, host, port, results) for i in range(args.clients)))
    wall = time.perf_counter() - t0
    done = [r for r in results if not r["dropped"]]
    ok = [r for r in done if r["ok"]]
    failed = [r for r in done if not r["ok"]]
    tokens = sum(r["tokens"] for r in results)
    report = {
        "clients": args.clients, "requests": len(results), "succeeded": len(ok),
        "failed": len(failed), "dropped": len(results) - len(done), "wall_s": round(wall, 2),
        "requests_per_s": round(len(results) / wall, 2),
        "generated_tokens_per_s": round(tokens / wall, 1),
        "latency_p50_ms": round(1e3 * percentile([r["latency"] for r in ok], 50), 1),
        "latency_p99_ms": round(1e3 * percentile([r["latency"] for r in ok], 99), 1),
    }
    ttft = [r["ttft"] for r in ok if r["ttft"] is not None]
    if ttft:
        report["ttft_p50_ms"] = round(1e3 * percentile(ttft, 50), 1)
        report["ttft_p99_ms"] = round(1e3 * percentile(ttft, 99), 1)
    problems = [f"{len(failed)} requests failed, e.g. {failed[0]['error']}"] if failed else []
    if args.metrics:
        deadline = time.time() + 30
        while True:
            m = metrics(args.url)
            busy = (m["compress_kv_blocks_used"], m["compress_num_requests_running"],
                    m["compress_num_requests_waiting"])
            if busy == (0, 0, 0) or time.time() > deadline:
                break
            await asyncio.sleep(0.05)
        report["kv_blocks_used_after"] = int(busy[0])
        report["preemptions"] = int(m["compress_num_preemptions_total"]
                                    - before.get("compress_num_preemptions_total", 0))
        if busy != (0, 0, 0):
            problems.append(f"not idle afterwards: blocks used, running, waiting = {busy}")
        if args.expect_preemption and report["preemptions"] == 0:
            problems.append("no preemption, though the load exceeds the KV cache")
    report["problems"] = problems
    print(json.dumps(report))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return 1 if problems else 0


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True)
    p.add_argument("--clients", type=int, default=64)
    p.add_argument("--requests", type=int, default=500, help="per client")
    p.add_argument("--prompt-len", type=span, default=(4, 64))
    p.add_argument("--max-tokens", type=span, default=(4, 48))
    p.add_argument("--disconnect", type=float, default=0.1)
    p.add_argument("--vocab", type=int, default=4096)
    p.add_argument("--model", default=None)
    p.add_argument("--api-key", default=None)
    p.add_argument("--no-stream", dest="stream", action="store_false")
    p.add_argument("--metrics", action="store_true", help="check compress serve's /metrics")
    p.add_argument("--expect-preemption", action="store_true")
    p.add_argument("--timeout", type=float, default=300)
    p.add_argument("--json", default=None)
    p.add_argument("--seed", type=int, default=0)
    sys.exit(asyncio.run(main(p.parse_args())))
