"""Captcha recognition API (FastAPI + onnxruntime, no PyTorch).

    uvicorn server_fastapi:app --host 0.0.0.0 --port 8000 --timeout-keep-alive 30   # the tutorial's, + KEEP_ALIVE_S
    uvicorn server_fastapi:app --host 0.0.0.0 --port 8000 --workers 2   # one process per worker, models in each
    python server_fastapi.py --port 8000 --workers 2                    # the same through uvicorn.run

Every model folder in ``checkpoints/`` holding a ``model.onnx`` is loaded once, at start-up (the lifespan), and
warmed up. Requests decode their images in a thread pool, so the event loop keeps serving while images are read,
and the network runs on the images of concurrent requests together (micro-batching: ``CAPTCHA_BATCH_MAX`` images,
waiting at most ``CAPTCHA_BATCH_WAIT_MS`` for them; service/batcher.py).

Endpoints (OpenAPI docs at ``/docs``):

* ``GET /health``: status, loaded models, default model, limits.
* ``GET /models``: name, architecture, input size, channels, parameters (when the training run recorded them),
  accuracy from the model's metadata, and which one is the default.
* ``POST /predict``: multipart ``files`` (one or many), optional ``model`` and ``allowed``. ``arch`` is the older
  name of ``model`` and still works. The tutorial's ``imgH`` / ``imgW`` fields are accepted and ignored: every
  model reads images at its own input size (stored in the model file), exactly as it was trained.
* ``POST /predict/base64``: JSON ``{"images": [...], "model": ..., "allowed": ...}`` (or a single ``"image"``);
  each string is base64, optionally a ``data:image/...;base64,`` URL.

Each result holds ``filename, text, answer, confidence, char_confidences, model, arch, width, height, ms``
(``arch`` repeats ``model``); ``answer`` is the value of an arithmetic captcha (``3+5=?`` -> 8) and null otherwise.
A file that cannot be read gets an entry ``{"filename", "error", "detail"}`` and the others are still read (200).
When no file could be read the status is that file's error status (400, or 413 for a file over the byte limit).
Every other error is ``{"error": ..., "detail": ...}`` with a 4xx status (503 when no model is loaded).

The parts live in ``service/``: settings (environment variables, see :class:`Settings`), schemas (the bodies),
errors, middleware (CORS, body cap), engines (the loaded models) and recognize (bytes -> results). Settings come
from the environment, e.g. ``CAPTCHA_CHECKPOINTS=/models CAPTCHA_CORS_ORIGINS=https://example.org uvicorn
server_fastapi:app``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import APIRouter, FastAPI, File, Form, Response, UploadFile
from fastapi.responses import JSONResponse

from models.engine import Engine
from service import compat
from service.engines import Engines, EnginesDep, SettingsDep, check_allowed, check_count
from service.errors import install_error_handlers
from service.middleware import add_middleware
from service.recognize import Item, decode_base64, read_items, read_upload
from service.schemas import (
    ALLOWED_HELP,
    MODEL_HELP,
    Base64Request,
    ErrorBody,
    FailedPredictResponse,
    Health,
    Limits,
    ModelInfo,
    PredictResponse,
)
from service.settings import KEEP_ALIVE_S, Settings

__all__ = ["Settings", "app", "create_app"]


router = APIRouter()


async def read_batch(engines: Engines, engine: Engine, items: list[Item], allowed: str | None,
                     settings: Settings) -> PredictResponse | JSONResponse:  # fmt: skip
    """Decode in the worker pool, run the network in a batch shared with concurrent requests (service/batcher.py),
    decode the text here. When no file could be read, the request fails with the first file's status."""
    start = time.perf_counter()
    prepared, logits = await read_items(engines, engine, items, settings)
    predictions = engine.decode(logits, allowed) if logits is not None else []
    results, statuses = prepared.results(engine, predictions, logits.shape[1] if logits is not None else 0)
    body = {"model": engine.name, "arch": engine.name, "count": len(results), "results": results,
            "ms": round((time.perf_counter() - start) * 1000, 2)}  # fmt: skip
    if results and len(statuses) == len(results):
        failed = FailedPredictResponse(error=results[0].error, detail=results[0].detail, **body)
        return JSONResponse(failed.model_dump(mode="json"), status_code=statuses[0])
    return PredictResponse(**body)


# ---- routes ----
@router.get("/health", response_model=Health, responses={503: {"model": Health}})
async def health(engines: EnginesDep, settings: SettingsDep, response: Response) -> Health:
    limits = Limits(max_file_bytes=settings.max_file_bytes, max_request_bytes=settings.max_request_bytes,
                    max_files=settings.max_files, max_pixels=settings.max_pixels, max_frames=settings.max_frames)  # fmt: skip
    if not engines.loaded:
        response.status_code = 503
    return Health(status="ok" if engines.loaded else "no models", models=sorted(engines.loaded),
                  default=engines.default, failed=engines.failed, limits=limits, timestamp=time.time())  # fmt: skip


@router.get("/models", response_model=list[ModelInfo])
async def list_models(engines: EnginesDep) -> list[ModelInfo]:
    return [model_info(name, engine, name == engines.default) for name, engine in engines.loaded.items()]


def model_info(name: str, engine: Engine, default: bool) -> ModelInfo:
    meta = engine.meta
    metrics = meta.metrics or {}
    scores = metrics.get("test") or metrics.get("selection")
    accuracy = None
    if isinstance(scores, dict):
        accuracy = {k: scores[k] for k in ("em", "em_nocase", "cer", "answer_acc", "n") if k in scores}
        accuracy["on"] = "test" if metrics.get("test") else "selection"
    params = metrics.get("parameters") or metrics.get("params")
    return ModelInfo(
        name=name, arch=meta.arch, img_h=meta.img_h, img_w=meta.img_w, channels=meta.channels,
        parameters=int(params) if isinstance(params, (int, float)) else None,
        onnx_mb=round(engine.path.stat().st_size / 1e6, 2), accuracy=accuracy, charset_size=len(meta.charset),
        default=default,
    )  # fmt: skip


@router.post("/predict", response_model=PredictResponse)
async def predict(
    engines: EnginesDep,
    settings: SettingsDep,
    files: Annotated[list[UploadFile], File(description="one or more images (PNG, JPEG, GIF, BMP, WebP)")],
    model: Annotated[str | None, Form(description=MODEL_HELP)] = None,
    arch: Annotated[str | None, Form(description="older name of `model`, still accepted")] = None,
    allowed: Annotated[str | None, Form(description=ALLOWED_HELP)] = None,
    imgH: Annotated[str | None, Form(description="tutorial field, accepted and ignored")] = None,  # noqa: N803
    imgW: Annotated[str | None, Form(description="tutorial field, accepted and ignored")] = None,  # noqa: N803
) -> PredictResponse | JSONResponse:
    check_count(len(files), settings)
    engine = engines.pick(model or arch)
    allowed = check_allowed(engine, allowed)
    items: list[Item] = []
    for upload in files:
        items.append((upload.filename or "upload", await read_upload(upload, settings.max_file_bytes)))
    return await read_batch(engines, engine, items, allowed, settings)


@router.post("/predict/base64", response_model=PredictResponse)
async def predict_base64(
    request: Base64Request, engines: EnginesDep, settings: SettingsDep
) -> PredictResponse | JSONResponse:
    images = request.images if request.images is not None else ([request.image] if request.image else [])
    check_count(len(images), settings)
    engine = engines.pick(request.model or request.arch)
    allowed = check_allowed(engine, request.allowed)
    names = request.filenames or []
    items = [(names[i] if i < len(names) else f"image{i + 1}", decode_base64(text, settings.max_file_bytes))
             for i, text in enumerate(images)]  # fmt: skip
    return await read_batch(engines, engine, items, allowed, settings)


# ---- the app ----
@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Load the models once per process, before the first request."""
    app.state.engines = Engines.load(app.state.settings)
    yield
    app.state.engines.close()


def create_app(settings: Settings | None = None) -> FastAPI:
    """The API; ``settings`` defaults to :meth:`Settings.from_env` (tests pass their own)."""
    app = FastAPI(
        title="captcha-ocr",
        version="1.0",
        description="Reads captchas: text, arithmetic answer, confidences. Models are loaded from checkpoints/.",
        lifespan=lifespan,
        responses={code: {"model": ErrorBody} for code in (400, 404, 413, 422, 503)},
    )
    app.state.settings = settings or Settings.from_env()
    add_middleware(app, app.state.settings)
    install_error_handlers(app)
    app.include_router(router)
    app.include_router(compat.router)
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
