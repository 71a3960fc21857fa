"""Service settings: every limit and option of the API, read from ``CAPTCHA_*`` environment variables.

Importing this module builds nothing (no app, no models), so tools and benchmarks can read its constants.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from models.paths import checkpoints_dir

MAX_ALLOWED_CHARS = 2000  # an explicit `allowed` set longer than this is a mistake, not a charset
# uvicorn closes an idle keep-alive connection after this many seconds (its own default is 5). Clients such as
# httpx and requests pools keep idle connections for 5 s too, so at uvicorn's default the server's close and the
# client's reuse of the same connection can cross: the client then reads a reset (httpx.ReadError) under load.
# A server keep-alive above the clients' expiry removes that race; `make ready` and `python server_fastapi.py`
# pass it, and so should a hand-written `uvicorn server_fastapi:app --timeout-keep-alive 30`.
KEEP_ALIVE_S = 30


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    return int(raw) if raw else default


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    return float(raw) if raw else default


@dataclass
class Settings:
    """Service settings; :meth:`from_env` reads the ``CAPTCHA_*`` environment variables named in the comments."""

    checkpoints: Path = field(default_factory=checkpoints_dir)  # CAPTCHA_CHECKPOINTS: folder of <name>/model.onnx
    max_file_bytes: int = 2 * 1024 * 1024  # CAPTCHA_MAX_FILE_BYTES: one image; captchas are a few KB
    max_request_bytes: int = 16 * 1024 * 1024  # CAPTCHA_MAX_REQUEST_BYTES: whole body, refused before reading it
    max_files: int = 64  # CAPTCHA_MAX_FILES: images per request
    max_pixels: int = 4096 * 4096  # CAPTCHA_MAX_PIXELS: width x height of one frame, checked before decoding
    max_frames: int = 64  # CAPTCHA_MAX_FRAMES: frames of an animated image
    threads: int = 1  # CAPTCHA_THREADS: onnxruntime intra-op threads per model (0 = all cores)
    inference_workers: int = 2  # CAPTCHA_INFERENCE_WORKERS: requests read in parallel per process
    batch_max: int = 32  # CAPTCHA_BATCH_MAX: images of concurrent requests run in one network call (1 = no batching)
    batch_wait_ms: float = 2.0  # CAPTCHA_BATCH_WAIT_MS: the longest a request waits for others (0 = no batching)
    cors_origins: list[str] = field(default_factory=list)  # CAPTCHA_CORS_ORIGINS: comma-separated; empty = no CORS
    cors_credentials: bool = False  # CAPTCHA_CORS_CREDENTIALS=1: allow cookies; refused with a "*" origin

    @classmethod
    def from_env(cls) -> Settings:
        defaults = cls()
        origins = [o.strip() for o in os.environ.get("CAPTCHA_CORS_ORIGINS", "").split(",") if o.strip()]
        return cls(
            checkpoints=checkpoints_dir(),
            max_file_bytes=_env_int("CAPTCHA_MAX_FILE_BYTES", defaults.max_file_bytes),
            max_request_bytes=_env_int("CAPTCHA_MAX_REQUEST_BYTES", defaults.max_request_bytes),
            max_files=_env_int("CAPTCHA_MAX_FILES", defaults.max_files),
            max_pixels=_env_int("CAPTCHA_MAX_PIXELS", defaults.max_pixels),
            max_frames=_env_int("CAPTCHA_MAX_FRAMES", defaults.max_frames),
            threads=_env_int("CAPTCHA_THREADS", defaults.threads),
            inference_workers=_env_int("CAPTCHA_INFERENCE_WORKERS", defaults.inference_workers),
            batch_max=_env_int("CAPTCHA_BATCH_MAX", defaults.batch_max),
            batch_wait_ms=_env_float("CAPTCHA_BATCH_WAIT_MS", defaults.batch_wait_ms),
            cors_origins=origins,
            cors_credentials=os.environ.get("CAPTCHA_CORS_CREDENTIALS", "").strip().lower() in ("1", "true", "yes"),
        )

    def __post_init__(self) -> None:
        if self.batch_max < 1 or not 0 <= self.batch_wait_ms <= 100:
            raise ValueError(f"CAPTCHA_BATCH_MAX must be >= 1 and CAPTCHA_BATCH_WAIT_MS 0-100, got {self.batch_max} "
                             f"and {self.batch_wait_ms}")  # fmt: skip
        if self.cors_credentials and "*" in self.cors_origins:
            # Browsers refuse this pair anyway; allowing it would mean reflecting any origin with cookies.
            raise ValueError("CORS: a '*' origin cannot be combined with credentials; list the origins instead")
