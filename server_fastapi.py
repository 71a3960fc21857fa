"""Captcha recognition API (FastAPI + onnxruntime, no PyTorch).

    uvicorn server_fastapi:app --host 0.0.0.0 --port 8000 --timeout-keep-alive 30   # the tutorial's, + KEEP_ALIVE_S
    uvicorn server_fastapi:app --host 0.0.0.0 --port 8000 --workers 2   # one process per worker, models in each
    python server_fastapi.py --port 8000 --workers 2                    # the same through uvicorn.run

Every model folder in ``checkpoints/`` holding a ``model.onnx`` is loaded once, at start-up (the lifespan), and
warmed up. Requests run the model in a thread pool, so the event loop keeps serving while images are read.

Endpoints (OpenAPI docs at ``/docs``):

* ``GET /health``: status, loaded models, default model, limits.
* ``GET /models``: name, architecture, input size, channels, parameters (when the training run recorded them),
  accuracy from the model's metadata, and which one is the default.
* ``POST /predict``: multipart ``files`` (one or many), optional ``arch`` and ``allowed``. The tutorial's
  ``imgH`` / ``imgW`` fields are accepted and ignored: every model reads images at its own input size (stored in
  the model file), exactly as it was trained, so a caller cannot put it off its training distribution.
* ``POST /predict/base64``: JSON ``{"images": [...], "arch": ..., "allowed": ...}`` (or a single ``"image"``);
  each string is base64, optionally a ``data:image/...;base64,`` URL.

Each result holds ``filename, text, answer, confidence, char_confidences, arch, width, height, ms``; ``answer`` is
the value of an arithmetic captcha (``3+5=?`` -> 8) and null otherwise. A file that cannot be read gets an entry
``{"filename", "error", "detail"}`` and the others are still read (200). When no file could be read the status is
that file's error status (400, or 413 for a file over the byte limit). Every other error is
``{"error": ..., "detail": ...}`` with a 4xx status.

Settings come from environment variables (see :class:`Settings`), e.g.
``CAPTCHA_CHECKPOINTS=/models CAPTCHA_CORS_ORIGINS=https://example.org uvicorn server_fastapi:app``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import re
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from models.codec import CHARSET_PRESETS, resolve_allowed
from models.engine import Engine, default_model_name, discover_models, load_engine
from models.preprocess import ImageError, load_image, normalize, to_canvas
from service.settings import KEEP_ALIVE_S, MAX_ALLOWED_CHARS, Settings

log = logging.getLogger("captcha_ocr.api")
ROOT = Path(__file__).resolve().parent
ERROR_FIELDS = {"error", "detail"}


# ---- response shapes (also the OpenAPI schema) ----
class ImageResult(BaseModel):
    filename: str
    text: str | None = None
    answer: int | None = Field(None, description="value of an arithmetic captcha, null otherwise")
    confidence: float | None = Field(None, description="product of the character confidences, 0..1")
    char_confidences: list[float] | None = None
    arch: str | None = None
    width: int | None = Field(None, description="width of the uploaded image in pixels")
    height: int | None = Field(None, description="height of the uploaded image in pixels")
    ms: float | None = Field(None, description="milliseconds spent on this image (decoding + its share of the batch)")
    error: str | None = Field(None, description="set when this file could not be read; the others still are")
    detail: str | None = None


class PredictResponse(BaseModel):
    arch: str
    count: int
    results: list[ImageResult]
    ms: float = Field(description="milliseconds for the whole request")


class ModelInfo(BaseModel):
    name: str
    arch: str
    img_h: int
    img_w: int
    channels: int
    parameters: int | None = Field(None, description="when the training run recorded it")
    onnx_mb: float
    accuracy: dict[str, Any] | None = Field(None, description="exact match etc. from the model's metadata")
    charset_size: int
    default: bool


class ErrorBody(BaseModel):
    error: str
    detail: Any = None


class Base64Request(BaseModel):
    images: list[str] | None = Field(None, description="base64 strings or data: URLs")
    image: str | None = Field(None, description="a single image, instead of `images`")
    filenames: list[str] | None = Field(None, description="optional names echoed back in the results")
    arch: str | None = Field(None, description="model name from /models; the default model when empty")
    allowed: str | None = Field(None, description=f"{', '.join(CHARSET_PRESETS)} or the characters themselves")


class ApiError(Exception):
    def __init__(self, status: int, error: str, detail: Any = None) -> None:
        super().__init__(error)
        self.status, self.error, self.detail = status, error, detail


# ---- request body cap: refused from Content-Length, or while streaming when there is none ----
class BodyLimitMiddleware:
    """Answers 413 when the body is larger than ``max_bytes``, without reading it all.

    A declared Content-Length over the limit is refused at once. Otherwise ``receive`` counts bytes and stops the
    request the moment the limit is passed; whatever the app then answers is replaced by the 413.
    """

    def __init__(self, app, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._refuse(send, int(declared))
        state = {"received": 0, "exceeded": False, "refused": False}

        async def limited_receive():
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > self.max_bytes:
                    state["exceeded"] = True
                    raise ApiError(413, "request too large")
            return message

        async def guarded_send(message) -> None:
            if state["exceeded"]:
                if not state["refused"] and message["type"] == "http.response.start":
                    state["refused"] = True
                    await self._refuse(send, None)
                return
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except ApiError:
            if not state["refused"]:
                await self._refuse(send, None)

    async def _refuse(self, send, declared: int | None) -> None:
        size = f"is {declared} bytes" if declared is not None else "goes over the limit"
        response = JSONResponse(
            {"error": "request too large", "detail": f"the body {size}; the limit is {self.max_bytes} bytes"},
            status_code=413,
        )
        await send({"type": "http.response.start", "status": 413, "headers": response.raw_headers})
        await send({"type": "http.response.body", "body": response.body})


# ---- the work: bytes -> results, in a worker thread ----
def _classify(error: ImageError) -> str:
    message = str(error)
    for kind in ("image too large", "too many frames", "empty file", "corrupt image data"):
        if message.startswith(kind):
            return kind
    return "not an image"


def recognize(engine: Engine, items: list[tuple[str, bytes | ApiError]], allowed: str | None, s: Settings) -> list:
    """Decode, preprocess and predict one request's images as one batch; unreadable ones get an error entry."""
    results: list[dict] = []
    inputs, slots, decode_ms = [], [], []
    for filename, data in items:
        if isinstance(data, ApiError):
            results.append({"filename": filename, "error": data.error, "detail": data.detail, "status": data.status})
            continue
        start = time.perf_counter()
        try:
            image = load_image(data, max_frames=s.max_frames, max_pixels=s.max_pixels)
            inputs.append(normalize(to_canvas(image, engine.spec)))  # the model core's preprocess, in two halves
        except ImageError as e:
            results.append({"filename": filename, "error": _classify(e), "detail": str(e), "status": 400})
            continue
        except Exception as e:  # a decoder bug on hostile bytes costs this file, not the whole request (a 500)
            log.exception("unexpected error decoding %r", filename)
            detail = f"the decoder failed ({type(e).__name__})"
            results.append({"filename": filename, "error": "corrupt image data", "detail": detail, "status": 400})
            continue
        slots.append(len(results))
        decode_ms.append((time.perf_counter() - start) * 1000)
        results.append({"filename": filename, "arch": engine.name, "width": image.width, "height": image.height})
    if inputs:
        start = time.perf_counter()
        predictions = engine.predict_arrays(np.stack(inputs), allowed)
        share_ms = (time.perf_counter() - start) * 1000 / len(inputs)
        for slot, ms, p in zip(slots, decode_ms, predictions, strict=True):
            results[slot].update(text=p.text, answer=p.answer, confidence=round(p.confidence, 6),
                                 char_confidences=[round(c, 6) for c in p.char_confidences],
                                 ms=round(ms + share_ms, 2))  # fmt: skip
    return results


def _decode_base64(text: str, max_bytes: int) -> bytes | ApiError:
    payload = text.strip()
    if payload.startswith("data:"):
        header, _, payload = payload.partition(",")
        if ";base64" not in header:
            return ApiError(400, "not base64", "a data: URL must be base64-encoded (data:image/png;base64,...)")
    payload = re.sub(r"\s+", "", payload)
    if len(payload) * 3 // 4 > max_bytes + 3:
        return ApiError(413, "file too large", f"the image is over the limit of {max_bytes} bytes")
    try:
        data = base64.b64decode(payload + "=" * (-len(payload) % 4), validate=True)
    except (binascii.Error, ValueError):
        return ApiError(400, "not base64", "the string is neither base64 nor a base64 data: URL")
    if len(data) > max_bytes:
        return ApiError(413, "file too large", f"the image is {len(data)} bytes; the limit is {max_bytes}")
    return data


# ---- the app ----
def create_app(settings: Settings | None = None) -> FastAPI:
    """The API; ``settings`` defaults to :meth:`Settings.from_env` (tests pass their own)."""
    settings = settings or Settings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Loaded once per process. Names come from the folder listing only: a request can only pick one of them.
        engines: dict[str, Engine] = {}
        failed: dict[str, str] = {}
        for name, folder in discover_models(settings.checkpoints).items():
            try:
                engine = load_engine(folder, "onnx", threads=settings.threads)
                engine.warm_up()
                engines[name] = engine
            except Exception as e:  # a bad file must not take the other models down
                failed[name] = f"{type(e).__name__}: {e}"
                log.error("model %s not loaded: %s", name, failed[name])
        default = default_model_name(settings.checkpoints)
        app.state.engines = engines
        app.state.failed = failed
        app.state.default = default if default in engines else next(iter(engines), None)
        app.state.executor = ThreadPoolExecutor(settings.inference_workers, thread_name_prefix="recognize")
        log.info("models loaded: %s (default %s)", ", ".join(engines) or "none", app.state.default)
        yield
        app.state.executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(
        title="captcha-ocr",
        version="1.0",
        description="Reads captchas: text, arithmetic answer, confidences. Models are loaded from checkpoints/.",
        lifespan=lifespan,
        responses={400: {"model": ErrorBody}, 404: {"model": ErrorBody}, 413: {"model": ErrorBody}},
    )
    app.state.settings = settings
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=settings.cors_credentials,
            allow_methods=["GET", "POST"],
            allow_headers=["Content-Type"],
        )
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_request_bytes)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"error": exc.error, "detail": exc.detail}, status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        words = {404: "not found", 405: "method not allowed"}.get(exc.status_code, "request failed")
        return JSONResponse({"error": words, "detail": exc.detail}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail = [{"field": ".".join(str(p) for p in e["loc"][1:]), "message": e["msg"]} for e in exc.errors()]
        return JSONResponse({"error": "invalid request", "detail": detail}, status_code=422)

    def pick_engine(arch: str | None) -> Engine:
        engines: dict[str, Engine] = app.state.engines
        if not engines:
            raise ApiError(503, "no models loaded",
                           f"no <name>/model.onnx under {settings.checkpoints}: train one (make train)")  # fmt: skip
        name = arch or app.state.default
        if name not in engines:
            raise ApiError(404, "unknown model", {"requested": name, "known": sorted(engines)})
        return engines[name]

    def check_allowed(engine: Engine, allowed: str | None) -> str | None:
        resolved = resolve_allowed(allowed)
        if resolved is None:
            return None
        if len(resolved) > MAX_ALLOWED_CHARS:
            raise ApiError(400, "invalid allowed", f"at most {MAX_ALLOWED_CHARS} characters")
        if not engine.charset.ids_for(resolved):
            raise ApiError(400, "invalid allowed",
                           f"none of these characters is known to model {engine.name}; presets: "
                           f"{', '.join(CHARSET_PRESETS)}")  # fmt: skip
        return resolved

    async def run(engine: Engine, items: list, allowed: str | None) -> JSONResponse:
        start = time.perf_counter()
        loop = asyncio.get_running_loop()
        results = await loop.run_in_executor(app.state.executor, recognize, engine, items, allowed, settings)
        statuses = [r.pop("status") for r in results if "status" in r]
        # Validated against the response models, then dumped lean: an error entry has no null text fields.
        entries = [ImageResult(**r) for r in results]
        body = {
            "arch": engine.name,
            "count": len(entries),
            "results": [
                e.model_dump(include={"filename", "error", "detail"}) if e.error else e.model_dump(exclude=ERROR_FIELDS)
                for e in entries
            ],
            "ms": round((time.perf_counter() - start) * 1000, 2),
        }
        if entries and len(statuses) == len(entries):  # nothing could be read: the request failed
            return JSONResponse({"error": entries[0].error, "detail": entries[0].detail, **body}, statuses[0])
        return JSONResponse(body)

    def check_count(n: int) -> None:
        if n == 0:
            raise ApiError(400, "no images", "send at least one image")
        if n > settings.max_files:
            raise ApiError(413, "too many files", f"{n} images; the limit is {settings.max_files} per request")

    @app.get("/health")
    async def health() -> JSONResponse:
        engines = app.state.engines
        body = {
            "status": "ok" if engines else "no models",
            "models": sorted(engines),
            "default": app.state.default,
            "failed": app.state.failed,
            "limits": {
                "max_file_bytes": settings.max_file_bytes,
                "max_request_bytes": settings.max_request_bytes,
                "max_files": settings.max_files,
                "max_pixels": settings.max_pixels,
                "max_frames": settings.max_frames,
            },  # fmt: skip
        }
        return JSONResponse(body, status_code=200 if engines else 503)

    @app.get("/models", response_model=list[ModelInfo])
    async def list_models() -> list[ModelInfo]:
        infos = []
        for name, engine in app.state.engines.items():
            meta = engine.meta
            metrics = meta.metrics or {}
            scores = metrics.get("test") or metrics.get("selection")
            accuracy = None
            if isinstance(scores, dict):
                accuracy = {k: scores[k] for k in ("em", "em_nocase", "cer", "answer_acc", "n") if k in scores}
                accuracy["on"] = "test" if metrics.get("test") else "selection"
            params = metrics.get("parameters") or metrics.get("params")
            infos.append(ModelInfo(
                name=name, arch=meta.arch, img_h=meta.img_h, img_w=meta.img_w, channels=meta.channels,
                parameters=int(params) if isinstance(params, (int, float)) else None,
                onnx_mb=round(engine.path.stat().st_size / 1e6, 2), accuracy=accuracy,
                charset_size=len(meta.charset), default=name == app.state.default,
            ))  # fmt: skip
        return infos

    @app.post("/predict", response_model=PredictResponse)
    async def predict(
        files: Annotated[list[UploadFile], File(description="one or more images (PNG, JPEG, GIF, BMP, WebP)")],
        arch: Annotated[str | None, Form(description="model name from /models; the default model when empty")] = None,
        allowed: Annotated[str | None, Form(description=f"{', '.join(CHARSET_PRESETS)} or explicit characters")] = None,
        imgH: Annotated[str | None, Form(description="tutorial field, accepted and ignored")] = None,  # noqa: N803
        imgW: Annotated[str | None, Form(description="tutorial field, accepted and ignored")] = None,  # noqa: N803
    ) -> JSONResponse:
        check_count(len(files))
        engine = pick_engine(arch)
        allowed = check_allowed(engine, allowed)
        items: list[tuple[str, bytes | ApiError]] = []
        for upload in files:
            # Read at most one byte over the limit: a larger file is refused without being read into memory.
            data = await upload.read(settings.max_file_bytes + 1)
            if len(data) > settings.max_file_bytes:
                data = ApiError(413, "file too large", f"the limit is {settings.max_file_bytes} bytes per image")
            items.append((upload.filename or "upload", data))
            await upload.close()
        return await run(engine, items, allowed)

    @app.post("/predict/base64", response_model=PredictResponse)
    async def predict_base64(request: Base64Request) -> JSONResponse:
        images = request.images if request.images is not None else ([request.image] if request.image else [])
        check_count(len(images))
        engine = pick_engine(request.arch)
        allowed = check_allowed(engine, request.allowed)
        names = request.filenames or []
        items = [
            (names[i] if i < len(names) else f"image{i + 1}", _decode_base64(text, settings.max_file_bytes))
            for i, text in enumerate(images)
        ]
        return await run(engine, items, allowed)

    return app


app = create_app()

if __name__ == "__main__":
    import argparse

    import uvicorn

    parser = argparse.ArgumentParser(description="Run the captcha recognition API with uvicorn.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=1, help="processes; each loads every model")
    args = parser.parse_args()
    uvicorn.run("server_fastapi:app", host=args.host, port=args.port, workers=args.workers,
                timeout_keep_alive=KEEP_ALIVE_S)  # fmt: skip
