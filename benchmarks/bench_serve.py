"""Serving throughput and latency of the generated API, per problem type.

For each type: render, `make setup`, `make pipeline`, then start one uvicorn worker on
127.0.0.1 (prediction log on) and load it with 8 concurrent connections: single-row
predictions, 1000-row batches and `GET /health` as the no-op baseline, then exactly 10,000
single-row predictions counting errors. Prints results beside the bars; gates nothing.
With --network the projects are rendered with deep_learning=yes, so the served model is the
network's ONNX export; they share one torch environment (see bench_network.py).

Uses `wrk` (Debian package `wrk`) when installed, else a small asyncio client, which is
slower and so understates throughput. Traffic goes to 127.0.0.1 only.

    python benchmarks/bench_serve.py [--duration 10] [--network] [classification regression]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import bench_network
from bench_pipeline import render

TEMPLATE = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PROBLEM_TYPES = json.loads((TEMPLATE / "cookiecutter.json").read_text())["problem_type"]
HOST = "127.0.0.1"
CONNECTIONS = 8
BATCH_ROWS = 1000
COUNTED_REQUESTS = 10_000
BARS = {"ratio": 0.5, "single_p99_ms": 25.0, "batch_p50_ms": 50.0}

# Runs inside wrk. With LIMIT set, the one wrk thread stops after that many responses and
# says so; wrk itself would still sleep out `-d`, so the caller then interrupts it (SIGINT
# ends wrk early with a normal summary). `done` prints one JSON line to parse.
WRK_SCRIPT = """
wrk.method = METHOD
wrk.body = BODY
wrk.headers["Content-Type"] = "application/json"
local seen = 0
if LIMIT then
  function response(status, headers, body)
    seen = seen + 1
    if seen == LIMIT then
      io.write("LIMIT REACHED\\n")
      io.flush()
      wrk.thread:stop()
    end
  end
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\\nRESULT {"requests": %d, "seconds": %f, "p50": %f, "p99": %f, "errors": %d}\\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1e3,
    latency:percentile(99) / 1e3, e.connect + e.read + e.write + e.status + e.timeout))
end
"""


def env() -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    clean["PATH"] = f"{BIN}{os.pathsep}{clean['PATH']}"
    return clean


def run(command: list[str], cwd: Path) -> None:
    subprocess.run(command, cwd=cwd, env=env(), check=True, capture_output=True, text=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()


def get_json(url: str) -> dict:
    return json.loads(fetch(url))


def wait_ready(base: str, server: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"server exited:\n{log.read_text()[-2000:]}")
        try:
            get_json(f"{base}/ready")
            return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"not ready after {timeout:.0f} s:\n{log.read_text()[-2000:]}")


def example_row(schema: list[dict]) -> dict:
    """Same rule as the generated loadtest/locustfile.py: a row inside the training ranges."""
    row = {}
    for feature in schema:
        if feature["kind"] == "numeric":
            row[feature["name"]] = (feature["min"] + feature["max"]) / 2
        elif feature["kind"] == "categorical":
            row[feature["name"]] = feature["categories"][0]
        elif feature["kind"] == "text":
            row[feature["name"]] = "Arrived quickly and works as described, but the manual is poor."
        else:
            row[feature["name"]] = feature["min"]
    return row


def wrk(
    url: str, body: str | None, duration: float, limit: int | None, tmp: Path, connections: int
) -> dict:
    script = tmp / "bench.lua"
    lua_string = f"[==[{body}]==]" if body is not None else "nil"
    script.write_text(
        f'METHOD = "{"POST" if body is not None else "GET"}"\nBODY = {lua_string}\n'
        f"LIMIT = {limit or 'nil'}\n{WRK_SCRIPT}"
    )
    command = ["wrk", "-t1", f"-c{connections}", f"-d{math.ceil(duration)}s", "--timeout", "10s"]
    result = None
    with subprocess.Popen(
        [*command, "-s", str(script), url], stdout=subprocess.PIPE, text=True
    ) as process:
        for line in process.stdout:
            if line.startswith("LIMIT REACHED"):
                process.send_signal(signal.SIGINT)
            elif line.startswith("RESULT "):
                result = json.loads(line.removeprefix("RESULT "))
    if process.returncode or result is None:
        raise RuntimeError(f"wrk exited with {process.returncode} and no result")
    return result


async def _python_load(
    url: str, body: str | None, duration: float, limit: int | None, connections: int
) -> dict:
    """Keep-alive HTTP/1.1 over asyncio streams; the fallback when wrk is missing."""
    parts = urlsplit(url)
    payload = (body or "").encode()
    head = f"{'POST' if body is not None else 'GET'} {parts.path} HTTP/1.1\r\nHost: {HOST}\r\n"
    request = (
        f"{head}Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    ).encode() + payload
    latencies: list[float] = []
    state = {"issued": 0, "errors": 0}
    deadline = time.monotonic() + duration

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(HOST, parts.port)
        try:
            while time.monotonic() < deadline and not (limit and state["issued"] >= limit):
                state["issued"] += 1
                start = time.perf_counter()
                writer.write(request)
                header = await reader.readuntil(b"\r\n\r\n")
                length = re.search(rb"(?i)content-length: *(\d+)", header)
                await reader.readexactly(int(length[1]) if length else 0)
                latencies.append(time.perf_counter() - start)
                if not header.startswith(b"HTTP/1.1 2"):
                    state["errors"] += 1
        except (OSError, asyncio.IncompleteReadError):
            state["errors"] += 1
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(connections)))
    latencies.sort()

    def percentile(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1e3 if latencies else 0

    return {
        "requests": len(latencies),
        "seconds": time.perf_counter() - start,
        "p50": percentile(0.50),
        "p99": percentile(0.99),
        "errors": state["errors"],
    }


def load(
    url: str,
    body: str | None,
    duration: float,
    tmp: Path,
    limit: int | None = None,
    connections: int = CONNECTIONS,
):
    if shutil.which("wrk"):
        return wrk(url, body, duration, limit, tmp, connections)
    return asyncio.run(_python_load(url, body, duration, limit, connections))


def stop(server: subprocess.Popen) -> None:
    if server.poll() is not None:
        return
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def bench(problem_type: str, workdir: Path, duration: float, venv: Path | None = None) -> dict:
    """With `venv` (a torch environment), the deep_learning=yes project, whose model is the
    network; else the default project and its own `make setup`."""
    if venv is None:
        project = render(problem_type, workdir)
        run(["make", "setup"], cwd=project)
    else:
        project = bench_network.render(problem_type, workdir, venv)
    package = project.name.replace("-", "_")
    run(["make", "pipeline"], cwd=project)
    version = json.loads((project / "reports" / "metrics.json").read_text())["version"]
    served = project / "models" / version / "metadata.json"
    name = json.loads(served.read_text())["model"]["name"]

    port = free_port()
    base = f"http://{HOST}:{port}"
    log = workdir / "server.log"
    server_env = {**env(), "SERVICE_PREDICTION_LOG": "true", "SERVICE_ALLOW_ANONYMOUS": "true"}
    server_env.pop("SERVICE_API_KEY", None)
    with log.open("w") as output:
        server = subprocess.Popen(
            [
                str(project / ".venv" / "bin" / "python"),
                "-m",
                "uvicorn",
                f"{package}.api:create_app",
                "--factory",
                "--host",
                HOST,
                "--port",
                str(port),
                "--workers",
                "1",
            ],
            cwd=project,
            env=server_env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so stop() reaches every child
        )
    try:
        wait_ready(base, server, log)
        row = example_row(get_json(f"{base}/v1/model")["features"])
        single = json.dumps({"instances": [row]})
        batch = json.dumps({"instances": [row] * BATCH_ROWS})
        predict = f"{base}/v1/predict"
        load(predict, single, 2, workdir)  # warm-up, not reported
        results = {
            "GET /health": load(f"{base}/health", None, duration, workdir),
            "predict 1 row": load(predict, single, duration, workdir),
            f"predict {BATCH_ROWS} rows": load(predict, batch, duration, workdir),
            # Latency of one batch: at 8 connections p50 would mostly be time in the queue.
            f"{BATCH_ROWS} rows, 1 conn": load(predict, batch, duration, workdir, connections=1),
            f"{COUNTED_REQUESTS:,} x 1 row": load(
                predict, single, 300, workdir, limit=COUNTED_REQUESTS
            ),
        }
        metrics = fetch(f"{base}/metrics")
    finally:
        stop(server)
    for result in results.values():
        result["rps"] = result["requests"] / result["seconds"]
    logged = project / "logs" / "predictions.jsonl"
    dropped = re.search(r"^prediction_log_dropped_total (\S+)$", metrics, re.MULTILINE)
    return {
        "type": problem_type if venv is None else f"{problem_type} ({name})",
        "results": results,
        "logged": len(logged.read_text().splitlines()) if logged.exists() else 0,
        "dropped": f"{float(dropped[1]):.0f}" if dropped else "n/a",
    }


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISS"


def report(rows: list[dict], duration: float) -> None:
    client = "wrk" if shutil.which("wrk") else "asyncio client (wrk not installed)"
    width = max(16, *(len(row["type"]) + 2 for row in rows))
    print(
        f"Serving on {HOST}: 1 uvicorn worker, {CONNECTIONS} connections, {duration:g} s per "
        f"route, {client}"
    )
    header = f"{'type':<{width}}{'route':<20}{'requests':>9}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}"
    print(header + f"{'errors':>8}")
    print("-" * (len(header) + 8))
    for row in rows:
        for route, r in row["results"].items():
            print(
                f"{row['type']:<{width}}{route:<20}{r['requests']:>9}{r['rps']:>9.0f}"
                f"{r['p50']:>9.2f}{r['p99']:>9.2f}{r['errors']:>8}"
            )
    print()
    print(
        f"{'type':<{width}}{'predict/no-op':>14}  {'1-row p99':>10}  {'batch p50':>10}  "
        f"{'errors':>6}  prediction log"
    )
    print(
        f"{'bar':<{width}}{'>= ' + str(BARS['ratio']):>14}  {'< 25 ms':>10}  "
        f"{'< 50 ms':>10}  {'0':>6}"
    )
    for row in rows:
        r = row["results"]
        single, batch = r["predict 1 row"], r[f"{BATCH_ROWS} rows, 1 conn"]
        ratio = single["rps"] / r["GET /health"]["rps"]
        errors = sum(x["errors"] for x in r.values())
        counted = r[f"{COUNTED_REQUESTS:,} x 1 row"]["requests"]
        errors += max(0, COUNTED_REQUESTS - counted)  # a short count is a failure too
        log = f"{row['logged']} lines, {row['dropped']} dropped"
        print(
            f"{row['type']:<{width}}{ratio:>9.2f} {verdict(ratio >= BARS['ratio']):<4}  "
            f"{single['p99']:>5.1f} {verdict(single['p99'] < BARS['single_p99_ms']):<4}  "
            f"{batch['p50']:>5.1f} {verdict(batch['p50'] < BARS['batch_p50_ms']):<4}  "
            f"{errors:>3} {verdict(errors == 0):<3}  {log}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    # Checked by hand: argparse validates an empty `nargs="*"` list against `choices`.
    parser.add_argument("types", nargs="*", help=f"some of {', '.join(PROBLEM_TYPES)}")
    parser.add_argument("--duration", type=float, default=10, help="seconds per route")
    parser.add_argument(
        "--network", action="store_true", help="serve the deep_learning=yes projects' network"
    )
    args = parser.parse_args()
    unknown = set(args.types) - set(PROBLEM_TYPES)
    if unknown:
        parser.error(f"unknown problem types {sorted(unknown)}; choose from {PROBLEM_TYPES}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        venv = bench_network.torch_env(Path(tmp)) if args.network else None
        for problem_type in args.types or PROBLEM_TYPES:
            workdir = Path(tmp) / problem_type
            workdir.mkdir()
            rows.append(bench(problem_type, workdir, args.duration, venv))
    report(rows, args.duration)


if __name__ == "__main__":
    main()
