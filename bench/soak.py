"""Soak test of compress serve: well-formed and hostile clients mixed, for a fixed duration.

Starts `BIN serve` on MODEL itself (to read its RSS), then CLIENTS concurrent clients loop for
DURATION seconds, each request drawn at random (seeded):
  * stream   (70%) a streaming completion, read to the end (or, with probability 0.1, dropped
             by the client after a few tokens: that one is expected to end early);
  * slowsend  (5%) the same request sent in 8 pieces over about 2 s (within --read-timeout);
  * slowread  (5%) a streaming completion read with a pause between chunks;
  * stall     (5%) half of the headers and then nothing: the server must close the connection
             within --read-timeout (+ 5 s);
  * oversize (10%) a body over --max-body-bytes (413), prompts x n over --max-request-seqs (400),
             or max_tokens past the context (400);
  * garbage   (5%) a body that is not JSON (400).
Well-formed requests (stream, slowsend, slowread) must all succeed; hostile ones must get the
expected answer. Every --report-every seconds: RSS of the server, requests so far, failures,
KV blocks in use. Afterwards: the KV blocks in use return to 0, and SIGTERM exits 0 within
--shutdown-timeout (+ 5 s). Writes a JSON report and a markdown table.

Usage: python bench/soak.py --bin target/release/compress [--model examples/models/demo]
    [--duration 600] [--clients 64] [--report-every 60] [--json OUT] [--md OUT] [--seed 0]
"""

import argparse
import asyncio
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from load import metrics, one_request, percentile  # noqa: E402

READ_TIMEOUT = 10
SHUTDOWN_TIMEOUT = 10
MAX_BODY = 1 << 20
MAX_REQUEST_SEQS = 256
KINDS = [("stream", 70), ("slowsend", 5), ("slowread", 5), ("stall", 5), ("oversize", 10),
         ("garbage", 5)]


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        kb = int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))
    return round(kb / 1024, 1)


async def raw(host, port, head, body, pieces=1, pause=0.0, read_pause=0.0):
    """Sends head + body in `pieces` with `pause` between; returns (status, body bytes)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        data = head + body
        step = max(1, len(data) // pieces + 1)
        for i in range(0, len(data), step):
            writer.write(data[i:i + step])
            await writer.drain()
            if pause:
                await asyncio.sleep(pause)
        status = int((await reader.readline()).split()[1])
        out = b""
        while chunk := await reader.read(4096):
            out += chunk
            if read_pause:
                await asyncio.sleep(read_pause)
        return status, out
    finally:
        writer.close()


def request_bytes(host, body):
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    head = (f"POST /v1/completions HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n").encode()
    return head, payload


async def stall(host, port):
    """Half a request's headers, then silence: ok when the server closes in time."""
    t0 = time.perf_counter()
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Le")
    await writer.drain()
    try:
        await asyncio.wait_for(reader.read(), READ_TIMEOUT + 5)
        return True, None
    except asyncio.TimeoutError:
        return False, f"open after {time.perf_counter() - t0:.1f} s"
    finally:
        writer.close()


async def hostile(kind, rng, host, port, ctx):
    """One hostile request; (ok, error)."""
    if kind == "stall":
        return await stall(host, port)
    if kind == "garbage":
        want, body = 400, b"{\"prompt\": [1, 2" + bytes(rng.randrange(256) for _ in range(32))
    else:
        which = rng.randrange(3)
        if which == 0:
            want, body = 413, json.dumps({"prompt": "x" * (MAX_BODY + 10)}).encode()
        elif which == 1:
            want, body = 400, {"prompt": [[1, 2]] * 100, "n": 8, "max_tokens": 1}
        else:
            want, body = 400, {"prompt": [1, 2], "max_tokens": ctx + 1}
    try:
        status, out = await raw(host, port, *request_bytes(host, body))
    except (ConnectionError, asyncio.IncompleteReadError, IndexError, ValueError) as e:
        # A 413 may be answered before the whole body is sent, and the rest reset.
        return want == 413, f"{kind}: {type(e).__name__}: {e}"
    return status == want, None if status == want else f"{kind}: HTTP {status}, wanted {want}"


async def well_formed(kind, rng, host, port, args):
    """One well-formed completion; the result dict of load.one_request."""
    gen = rng.randint(4, 48)
    prompt = [rng.randrange(3, args.vocab) for _ in range(rng.randint(4, 64))]
    body = {"prompt": prompt, "max_tokens": gen, "temperature": 0, "ignore_eos": True,
            "stream": kind != "slowsend"}
    t0 = time.perf_counter()
    if kind == "stream":
        drop = rng.randint(1, max(1, gen - 1)) if rng.random() < 0.1 else None
        return await one_request(host, port, body, drop, True, None)
    pieces, pause, read_pause = (8, 0.25, 0.0) if kind == "slowsend" else (1, 0.0, 0.05)
    r = {"dropped": False, "tokens": gen, "ttft": None}
    try:
        status, out = await raw(host, port, *request_bytes(host, body), pieces, pause, read_pause)
        r["ok"] = status == 200 and (b"[DONE]" in out or b'"completion_tokens"' in out)
        r["error"] = None if r["ok"] else f"{kind}: HTTP {status}: {out[:200]!r}"
    except (ConnectionError, asyncio.IncompleteReadError, IndexError, ValueError) as e:
        r.update(ok=False, error=f"{kind}: {type(e).__name__}: {e}")
    r["latency"] = time.perf_counter() - t0
    return r


async def client(i, args, host, port, ctx, end, stats):
    rng = random.Random(args.seed * 1000 + i)
    names, weights = zip(*KINDS)
    while time.time() < end:
        kind = rng.choices(names, weights)[0]
        if kind in ("stream", "slowsend", "slowread"):
            try:
                r = await asyncio.wait_for(well_formed(kind, rng, host, port, args), 120)
            except asyncio.TimeoutError:
                r = {"ok": False, "dropped": False, "error": f"{kind}: no answer in 120 s",
                     "latency": 120}
            stats["well_formed"].append(r)
        else:
            ok, err = await hostile(kind, rng, host, port, ctx)
            stats["hostile"] += 1
            if not ok:
                stats["hostile_failures"].append(err)


async def sampler(pid, url, args, end, stats):
    t0 = time.time()
    while True:
        await asyncio.sleep(min(args.report_every, max(0.0, end - time.time())))
        m = await asyncio.to_thread(metrics, url)
        done = [r for r in stats["well_formed"] if not r["dropped"]]
        row = {"t_s": round(time.time() - t0), "rss_mib": rss_mib(pid),
               "requests": len(stats["well_formed"]) + stats["hostile"],
               "failed": sum(not r["ok"] for r in done) + len(stats["hostile_failures"]),
               "kv_blocks_used": int(m["compress_kv_blocks_used"])}
        stats["samples"].append(row)
        print(json.dumps(row), flush=True)
        if time.time() >= end:
            return


def start_server(args):
    cmd = [args.bin, "serve", "--model", args.model, "--port", "0", "--max-seqs", "64",
           "--read-timeout", str(READ_TIMEOUT), "--shutdown-timeout", str(SHUTDOWN_TIMEOUT),
           "--max-body-bytes", str(MAX_BODY), "--max-request-seqs", str(MAX_REQUEST_SEQS)]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()
    port = re.search(r"127\.0\.0\.1:(\d+)", line)
    if not port:
        proc.kill()
        sys.exit(f"soak: the server did not start: {line}{proc.stderr.read()}")
    # Keep draining its stderr: a full pipe would block the server.
    threading.Thread(target=lambda: [sys.stderr.write(x) for x in proc.stderr], daemon=True).start()
    return proc, int(port.group(1))


def summary(args, stats, after, term_s, code):
    done = [r for r in stats["well_formed"] if not r["dropped"]]
    ok = [r for r in done if r["ok"]]
    failures = [r["error"] for r in done if not r["ok"]] + stats["hostile_failures"]
    rss = [s["rss_mib"] for s in stats["samples"]]
    return {
        "duration_s": args.duration, "clients": args.clients,
        "requests": len(stats["well_formed"]) + stats["hostile"],
        "well_formed": len(stats["well_formed"]), "dropped_by_client": len(stats["well_formed"]) - len(done),
        "hostile": stats["hostile"], "failed": len(failures), "failures": failures[:10],
        "latency_p50_ms": round(1e3 * percentile([r["latency"] for r in ok], 50), 1),
        "latency_p99_ms": round(1e3 * percentile([r["latency"] for r in ok], 99), 1),
        "rss_min_mib": min(rss), "rss_max_mib": max(rss), "kv_blocks_used_after": after,
        "sigterm_exit_s": round(term_s, 2), "sigterm_exit_code": code, "samples": stats["samples"],
    }


def markdown(r):
    rows = "\n".join(f"| {s['t_s']} | {s['requests']} | {s['failed']} | {s['rss_mib']} | "
                     f"{s['kv_blocks_used']} |" for s in r["samples"])
    return (f"| requests (well-formed / hostile / dropped by client) | failures | p50 / p99 latency "
            f"| RSS min / max | KV blocks after | SIGTERM |\n|---|---|---|---|---|---|\n"
            f"| {r['requests']} ({r['well_formed']} / {r['hostile']} / {r['dropped_by_client']}) | "
            f"{r['failed']} | {r['latency_p50_ms']} / {r['latency_p99_ms']} ms | "
            f"{r['rss_min_mib']} / {r['rss_max_mib']} MiB | {r['kv_blocks_used_after']} | "
            f"exit {r['sigterm_exit_code']} in {r['sigterm_exit_s']} s |\n\n"
            f"| t (s) | requests so far | failures | RSS (MiB) | KV blocks in use |\n"
            f"|---|---|---|---|---|\n{rows}\n")


async def run(args):
    proc, port = start_server(args)
    url = f"http://127.0.0.1:{port}"
    ctx = json.load(open(os.path.join(args.model, "config.json")))["max_position_embeddings"]
    stats = {"well_formed": [], "hostile": 0, "hostile_failures": [], "samples": []}
    end = time.time() + args.duration
    try:
        await asyncio.gather(sampler(proc.pid, url, args, end, stats),
                             *(client(i, args, "127.0.0.1", port, ctx, end, stats)
                               for i in range(args.clients)))
        deadline = time.time() + 30
        while (after := int(metrics(url)["compress_kv_blocks_used"])) and time.time() < deadline:
            await asyncio.sleep(0.1)
    finally:
        t0 = time.perf_counter()
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(SHUTDOWN_TIMEOUT + 5)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = "killed"
    return summary(args, stats, after, time.perf_counter() - t0, code)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bin", required=True)
    p.add_argument("--model", default="examples/models/demo")
    p.add_argument("--duration", type=float, default=600)
    p.add_argument("--clients", type=int, default=64)
    p.add_argument("--report-every", type=float, default=60)
    p.add_argument("--vocab", type=int, default=4096)
    p.add_argument("--json", default="target/soak.json")
    p.add_argument("--md", default="target/soak.md")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    r = asyncio.run(run(args))
    problems = []
    if r["failed"]:
        problems.append(f"{r['failed']} failed, e.g. {r['failures'][0]}")
    if r["kv_blocks_used_after"]:
        problems.append(f"{r['kv_blocks_used_after']} KV blocks still in use")
    if r["sigterm_exit_code"] != 0:
        problems.append(f"SIGTERM: exit {r['sigterm_exit_code']}")
    # RSS flat: after the first sample (warm-up), within 10% + 8 MiB of that sample.
    rss = [s["rss_mib"] for s in r["samples"]]
    if len(rss) > 1 and max(rss[1:]) > rss[0] * 1.1 + 8:
        problems.append(f"RSS grew from {rss[0]} to {max(rss[1:])} MiB")
    r["problems"] = problems
    with open(args.json, "w") as f:
        json.dump(r, f, indent=1)
    with open(args.md, "w") as f:
        f.write(markdown(r))
    print(markdown(r))
    print(json.dumps({k: v for k, v in r.items() if k != "samples"}))
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
