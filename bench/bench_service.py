"""Load test of the recognition API on loopback: requests/s, p50/p99 latency, errors and server memory.

    python bench/bench_service.py                                  # models in checkpoints/
    python bench/bench_service.py --checkpoints /tmp/ckpt --workers 1,2 --concurrency 1,8,16,32 --requests 200
    python bench/bench_service.py --concurrency 1,8,32 --requests 30 --seconds 3 --json /tmp/service.json

Starts ``uvicorn server_fastapi:app`` itself on a free 127.0.0.1 port (once per ``--workers`` value), sends
single-image ``POST /predict`` requests from ``--concurrency`` asyncio tasks (httpx), stops each level after
``--requests`` requests or ``--seconds``, whichever comes first, and prints one row per level. Never leaves
loopback. RSS is summed over the server's process tree (Linux /proc). The load average is printed because the
numbers mean little on a machine busy with other work.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import time
from pathlib import Path

import httpx

from models.engine import discover_models
from models.paths import REALDEV, ROOT
from tools.servers import free_port, uvicorn_command, wait_until_up


def tree_rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and all its descendants, in MB."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo += children.get(p, [])
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


async def run_level(url: str, image: tuple[str, bytes], arch: str | None, concurrency: int, requests: int,
                    seconds: float) -> dict:  # fmt: skip
    latencies: list[float] = []
    errors = 0
    issued = 0
    data = {"model": arch} if arch else {}
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:

        async def worker() -> None:
            nonlocal issued, errors
            while issued < requests and time.perf_counter() < deadline:
                issued += 1
                start = time.perf_counter()
                try:
                    r = await client.post("/predict", files={"files": image}, data=data)
                    ok = r.status_code == 200 and "text" in r.json()["results"][0]
                except httpx.HTTPError:
                    ok = False
                latencies.append((time.perf_counter() - start) * 1000)
                errors += not ok

        for _ in range(3):  # warm the connections and the server
            await client.post("/predict", files={"files": image}, data=data)
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    latencies.sort()
    n = len(latencies)
    return {
        "n": n,
        "rps": n / elapsed,
        "p50": statistics.median(latencies),
        "p99": latencies[min(n - 1, int(0.99 * n))],
        "errors": errors,
    }


def start_server(checkpoints: Path, workers: int, threads: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "CAPTCHA_CHECKPOINTS": str(checkpoints), "CAPTCHA_THREADS": str(threads)}
    proc = subprocess.Popen(uvicorn_command("127.0.0.1", port, workers, quiet=True), cwd=ROOT, env=env)
    url = f"http://127.0.0.1:{port}"
    if wait_until_up(f"{url}/health", [proc], timeout=120, need_ok=True):
        time.sleep(1.0 * workers)  # with several workers, give every worker time to finish loading before measuring
        return proc, url
    if proc.poll() is not None:
        raise SystemExit(f"server exited with {proc.returncode}")
    proc.terminate()
    raise SystemExit("server did not start within 120 s")


def main() -> None:
    parser = argparse.ArgumentParser(description="Load-test the recognition API on loopback.")
    parser.add_argument("--checkpoints", type=Path, default=ROOT / "checkpoints")
    parser.add_argument("--arch", default=None, help="model name; the server's default when omitted")
    parser.add_argument("--workers", default="1,2", help="uvicorn worker counts to try")
    parser.add_argument("--concurrency", default="1,8,16,32")
    parser.add_argument("--requests", type=int, default=200, help="requests per level (upper bound)")
    parser.add_argument("--seconds", type=float, default=20.0, help="time per level (upper bound)")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads per model")
    parser.add_argument("--image", type=Path, default=REALDEV / "ruoyi" / "00000005.png")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows and memory figures here")
    args = parser.parse_args()

    if not discover_models(args.checkpoints):
        raise SystemExit(f"no <name>/model.onnx under {args.checkpoints}; train one or pass --checkpoints")
    if not args.image.is_file():
        raise SystemExit(f"no image at {args.image}; pass --image")
    image = (args.image.name, args.image.read_bytes())
    print(f"cpus {os.cpu_count()}, load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}, "
          f"image {args.image.name} ({len(image[1])} bytes), onnxruntime threads {args.threads}")  # fmt: skip
    result = {
        "image": args.image.name,
        "image_bytes": len(image[1]),
        "threads": args.threads,
        "levels": [],
        "memory": [],
        "requests": args.requests,
        "seconds": args.seconds,
    }
    print("| workers | concurrency | requests | req/s | p50 ms | p99 ms | errors | load avg (1 min) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for workers in (int(w) for w in args.workers.split(",")):
        proc, url = start_server(args.checkpoints, workers, args.threads)
        try:
            rss_before = tree_rss_mb(proc.pid)
            for concurrency in (int(c) for c in args.concurrency.split(",")):
                r = asyncio.run(run_level(url, image, args.arch, concurrency, args.requests, args.seconds))
                result["levels"].append(
                    {"workers": workers, "concurrency": concurrency, **r, "load": os.getloadavg()[0]}
                )
                print(f"| {workers} | {concurrency} | {r['n']} | {r['rps']:.1f} | {r['p50']:.1f} | {r['p99']:.1f} "
                      f"| {r['errors']} | {os.getloadavg()[0]:.2f} |", flush=True)  # fmt: skip
            rss_after = tree_rss_mb(proc.pid)
            result["memory"].append({"workers": workers, "before_mb": rss_before, "after_mb": rss_after})
            print(f"  server RSS ({workers} worker(s), whole process tree): "
                  f"{rss_before:.0f} MB before, {rss_after:.0f} MB after", flush=True)  # fmt: skip
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
