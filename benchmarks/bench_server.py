"""The local server (issue 15): what going through HTTP costs, and how it holds up under load.

1. Time to first token of model `folio`, streamed through `folio serve` with the official
   `openai` client, against `folio ask`'s chain in-process (`Folio().chat.ask`, the same
   engine), on the same library, question and settings: in-process, server, in-process.
2. 50 clients at once, each streaming a short answer: how many were answered (none may be
   lost), and the wait for the first token (p50, p95, max) as the queue serves them in turn.
3. A client that hangs up mid-answer: how long until the model stops (the server's log).

    python benchmarks/bench_server.py [--runs 10] [--clients 50] [--json out.json]

Uses the starter model and the real embedder; builds its own small library in a temp dir.
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from _common import ROOT, percentile

sys.path.insert(0, str(ROOT / "tests"))

KEY = "bench-key-" + "b" * 24
QUESTION = "How much chain should I let out when anchoring?"
SETTINGS = {"max_tokens": 32, "temperature": 0.0, "seed": 7}


def build(home: Path) -> None:
    from serverproc import build_library

    build_library(home)


def start_server(home: Path, max_queue: int) -> tuple[subprocess.Popen, str, list[str]]:
    from serverproc import folio_env

    lines: list[str] = []
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--library", str(home / "library"), "--port",
         "0", "--api-key", KEY, "--max-queue", str(max_queue)],
        env=folio_env(home), cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
        text=True)
    threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True).start()
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        m = re.search(r"ready at (\S+)", "".join(lines))
        if m:
            return proc, m.group(1), lines
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise SystemExit("the server did not start:\n" + "".join(lines))


def ttft_server(client) -> float:
    started = time.perf_counter()
    stream = client.chat.completions.create(
        model="folio", messages=[{"role": "user", "content": QUESTION}], stream=True,
        **SETTINGS)
    first = None
    for chunk in stream:
        if first is None and chunk.choices and chunk.choices[0].delta.content:
            first = time.perf_counter() - started
    return first


def ttft_in_process(folio) -> float:
    store = folio.store
    chat = store.create_chat()
    started = time.perf_counter()
    first = None
    for ev in folio.chat.ask(chat.id, QUESTION, overrides=SETTINGS):
        if first is None and ev.kind == "token" and ev.text:
            first = time.perf_counter() - started
    store.delete_chat(chat.id)
    return first


def concurrent(url: str, clients: int) -> dict:
    import openai

    results: list[dict] = [{} for _ in range(clients)]
    barrier = threading.Barrier(clients)

    def one(i: int) -> None:
        client = openai.OpenAI(base_url=url, api_key=KEY, max_retries=0, timeout=1800)
        barrier.wait()
        started = time.perf_counter()
        try:
            stream = client.chat.completions.create(
                model="folio", stream=True, max_tokens=16, temperature=0.0,
                messages=[{"role": "user", "content": f"{QUESTION} (client {i})"}])
            first, text, sources = None, "", None
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    first = first or time.perf_counter() - started
                    text += chunk.choices[0].delta.content
                if (chunk.model_extra or {}).get("sources") is not None:
                    sources = chunk.model_extra["sources"]
            results[i] = {"ok": bool(text) and sources is not None, "wait": first,
                          "total": time.perf_counter() - started}
        except Exception as exc:  # noqa: BLE001 - counted as lost
            results[i] = {"ok": False, "error": repr(exc)}

    threads = [threading.Thread(target=one, args=(i,)) for i in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    waits = [r["wait"] for r in results if r.get("ok")]
    return {"clients": clients, "answered": len(waits), "lost": clients - len(waits),
            "errors": sorted({r["error"] for r in results if r.get("error")}),
            "wait_p50_s": round(percentile(waits, 50), 2),
            "wait_p95_s": round(percentile(waits, 95), 2),
            "wait_max_s": round(max(waits), 2) if waits else None,
            "wall_s": round(wall, 1)}


def cancel_latency(url: str, lines: list[str], model: str, tries: int = 5) -> list[float]:
    """The starter model itself (not `folio`, which answers a question its documents do not
    cover without the model) on a prompt it writes long answers to."""
    host, port = re.match(r"http://([^:/]+):(\d+)", url).groups()
    body = json.dumps({"model": model, "stream": True, "max_tokens": 1000,
                       "temperature": 0.0, "messages": [{"role": "user", "content":
                       "Write a long story about a sailor and the sea, with many chapters."
                       }]}).encode()
    out = []
    for _ in range(tries):
        before = "".join(lines).count("client left")
        sock = socket.create_connection((host, int(port)), timeout=300)
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: "
                     b"Bearer " + KEY.encode() + b"\r\nContent-Type: application/json\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        seen = b""
        while seen.count(b"data: ") < 6:
            seen += sock.recv(65536)
        sock.close()
        deadline = time.monotonic() + 60
        while "".join(lines).count("client left") <= before and time.monotonic() < deadline:
            time.sleep(0.01)
        found = re.findall(r"generation stopped ([\d.]+) s after", "".join(lines))
        if len(found) > before:
            out.append(float(found[before]))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()

    import os

    import openai

    from app.core.models.starter import ensure_starter_model

    tmp = Path(tempfile.mkdtemp(prefix="folio-bench-server-"))
    home = tmp / "home"
    home.mkdir()
    from serverproc import folio_env

    os.environ.update({k: v for k, v in folio_env(home).items()
                       if k.startswith(("FOLIO_", "HF_", "TRANSFORMERS_"))})
    from conftest import SHARED_MODELS

    starter = ensure_starter_model(SHARED_MODELS)
    build(home)
    report: dict = {"url_kind": "loopback", "settings": SETTINGS}

    def in_process_phase() -> list[float]:
        """`folio ask`'s chain in this process, with the library to itself as `folio ask`
        has it when nothing else runs (beside a running server it would read the library
        read-only, which re-checks the table versions on every search: not the same work)."""
        from app.core.service import Folio

        folio = Folio(home / "library")
        folio.library_read_only = None
        try:
            ttft_in_process(folio)  # warm: model, embedder, caches
            return [ttft_in_process(folio) for _ in range(args.runs)]
        finally:
            folio.close()

    # A, B, A: the in-process runs before and after the server's, so drift on a shared
    # machine shows as a difference between the two A phases.
    local_before = in_process_phase()
    proc, url, lines = start_server(home, max_queue=max(64, args.clients))
    try:
        client = openai.OpenAI(base_url=url, api_key=KEY, max_retries=0, timeout=600)
        ttft_server(client)  # warm
        server = [ttft_server(client) for _ in range(args.runs)]
    except BaseException:
        proc.terminate()
        raise
    proc.terminate()
    proc.wait(30)
    local_after = in_process_phase()
    local = local_before + local_after
    med_s, med_l = statistics.median(server), statistics.median(local)
    report["ttft"] = {
        "runs": args.runs,
        "in_process_median_s": round(med_l, 3), "server_median_s": round(med_s, 3),
        "in_process_before_median_s": round(statistics.median(local_before), 3),
        "in_process_after_median_s": round(statistics.median(local_after), 3),
        "in_process_all_s": [round(x, 3) for x in local],
        "server_all_s": [round(x, 3) for x in server],
        "overhead_pct": round(100 * (med_s - med_l) / med_l, 1),
    }
    print(f"TTFT median: in-process {med_l * 1000:.0f} ms (before "
          f"{report['ttft']['in_process_before_median_s'] * 1000:.0f}, after "
          f"{report['ttft']['in_process_after_median_s'] * 1000:.0f}), through the server "
          f"{med_s * 1000:.0f} ms ({report['ttft']['overhead_pct']:+.1f} %)", flush=True)

    proc, url, lines = start_server(home, max_queue=max(64, args.clients))
    try:
        report["concurrent"] = concurrent(url, args.clients)
        c = report["concurrent"]
        print(f"{c['clients']} clients at once: {c['answered']} answered, {c['lost']} lost; "
              f"wait for the first token p50 {c['wait_p50_s']} s, p95 {c['wait_p95_s']} s, "
              f"max {c['wait_max_s']} s; all done in {c['wall_s']} s", flush=True)
        stops = cancel_latency(url, lines, starter.name)
        report["cancel_after_hangup_s"] = stops
        if stops:
            print(f"hang-up to model stopped: median {statistics.median(stops) * 1000:.0f} ms, "
                  f"max {max(stops) * 1000:.0f} ms over {len(stops)}", flush=True)
    finally:
        proc.terminate()
        proc.wait(30)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
