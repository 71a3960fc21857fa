"""Starting the servers as processes: a free port, the uvicorn command line, waiting until a server answers.

Used by ``make ready`` (tools/run_ready.py), the service benchmark and the tests that run real servers.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

from service.settings import KEEP_ALIVE_S


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def uvicorn_command(host: str, port: int, workers: int = 1, quiet: bool = False) -> list[str]:
    """``python -m uvicorn server_fastapi:app`` with the keep-alive every client of ours needs (service.settings)."""
    command = [sys.executable, "-m", "uvicorn", "server_fastapi:app", "--host", host, "--port", str(port),
               "--workers", str(workers), "--timeout-keep-alive", str(KEEP_ALIVE_S)]  # fmt: skip
    return command + (["--log-level", "warning", "--no-access-log"] if quiet else [])


def wait_until_up(url: str, procs: list[subprocess.Popen], timeout: float = 90.0, need_ok: bool = False) -> bool:
    """True once ``url`` answers (any HTTP status, or only 200 with ``need_ok``); False when one of ``procs``
    exited or ``timeout`` seconds passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            return False
        try:
            with urllib.request.urlopen(url, timeout=2):
                return True
        except urllib.error.HTTPError:
            if not need_ok:
                return True  # it answered (e.g. 503 without models)
        except OSError:
            pass
        time.sleep(0.2)
    return False


def stop(procs: list[subprocess.Popen]) -> None:
    """SIGTERM each process (both servers shut down gracefully on it), then kill what is still up after 10 s."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)  # both servers shut down gracefully on SIGTERM
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
