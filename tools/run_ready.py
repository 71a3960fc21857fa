"""`make ready`: start the recognition API (uvicorn) and the demo page (gunicorn), stop both on Ctrl-C.

    python tools/run_ready.py [--host 127.0.0.1] [--api-port 8000] [--port 8001] [--api-workers 1] [--page-workers 2]

The API loads every model in checkpoints/ (CAPTCHA_CHECKPOINTS overrides). The page proxies /api/* to the API
started here. If either server exits, the other is stopped too and the exit status is non-zero.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time

from models.engine import discover_models
from models.paths import ROOT, checkpoints_dir
from tools.servers import stop, uvicorn_command, wait_until_up


def main() -> int:
    parser = argparse.ArgumentParser(description="Start the API and the demo page; Ctrl-C stops both.")
    parser.add_argument("--host", default="127.0.0.1", help="address both servers listen on (0.0.0.0: all)")
    parser.add_argument("--api-port", type=int, default=8000)
    parser.add_argument("--port", type=int, default=8001, help="the demo page")
    parser.add_argument("--api-workers", type=int, default=1, help="uvicorn processes (each loads every model)")
    parser.add_argument("--page-workers", type=int, default=2, help="gunicorn processes for the page and proxy")
    args = parser.parse_args()

    checkpoints = checkpoints_dir()
    found = discover_models(checkpoints)
    if found:
        print(f"models in {checkpoints}: {', '.join(found)}")
    else:
        print(f"warning: no <name>/model.onnx under {checkpoints}; the page will say so. Train one: make train")

    local = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    upstream = f"http://{local}:{args.api_port}"
    env = {**os.environ, "API_UPSTREAM": upstream, "CAPTCHA_CHECKPOINTS": str(checkpoints)}
    api = uvicorn_command(args.host, args.api_port, args.api_workers)
    page = [sys.executable, "-m", "gunicorn", "--workers", str(args.page_workers), "--threads", "4",
            "--bind", f"{args.host}:{args.port}", "--access-logfile", "-", "server_flask:create_app()"]  # fmt: skip
    procs = [subprocess.Popen(api, cwd=ROOT, env=env), subprocess.Popen(page, cwd=ROOT, env=env)]

    def on_signal(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        if not (
            wait_until_up(f"{upstream}/health", procs) and wait_until_up(f"http://{local}:{args.port}/healthz", procs)
        ):
            print("a server did not start; see the messages above", file=sys.stderr)
            stop(procs)
            return 1
        print(f"\n  demo page:  http://{local}:{args.port}\n  API docs:   {upstream}/docs\n  Ctrl-C stops both.\n",
              flush=True)  # fmt: skip
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
        print("a server exited; stopping the other", file=sys.stderr)
        stop(procs)
        return 1
    except KeyboardInterrupt:
        print("\nstopping...", flush=True)
        stop(procs)
        return 0


if __name__ == "__main__":
    sys.exit(main())
