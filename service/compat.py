"""Routes of the servers ddddocr users already call, answered by our models, each in /docs under "ddddocr".

* ``POST /ocr``, ddddocr-fastapi's shape: a form (multipart or urlencoded) with ``file`` or a base64 ``image``,
  ``probability``, ``charsets``, ``png_fix``; ddddocr 1.6's own API posts JSON to the same path
  (``{"image": base64, "probability", "charset_range", "colors", ...}``). The two meet on one path: the body's
  content type tells them apart, and one response carries both answers (``code/message/data`` for
  ddddocr-fastapi, ``result/probability/processing_time`` for ddddocr 1.6).
* ``POST /ocr/file``: ddddocr 1.6's upload route (multipart ``file``, ``probability``).
* ``GET /health`` is ours, with ddddocr's ``status`` ("ok") and ``timestamp`` in it.

Differences from the originals: errors carry their real HTTP status (ddddocr-fastapi answers 200 with the error
code in the body; the body's ``code`` is the same here), and every route takes ``charsets`` (characters or a preset
0-7) for that request only, where ddddocr-fastapi calls ``set_ranges`` on its one shared instance. ``model`` picks
one of our models. Colour filters are accepted and ignored.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from models.ddddocr_compat import form_ranges, probability_dict, resolve_ranges
from service.engines import Engines, EnginesDep, SettingsDep, check_allowed
from service.errors import ApiError
from service.recognize import decode_base64, read_items, read_upload
from service.schemas import DdddocrJsonRequest, DdddocrResponse
from service.settings import Settings

router = APIRouter(tags=["ddddocr"])

FORM_FIELDS = {
    "image": {"type": "string", "description": "base64 image (or a data: URL), instead of `file`"},
    "probability": {"type": "boolean", "default": False},
    "charsets": {"type": "string", "description": "characters, or a ddddocr preset 0-7, for this request"},
    "png_fix": {"type": "boolean", "default": False, "description": "accepted; transparency is always on white"},
    "model": {"type": "string", "description": "one of /models; the default model when empty"},
}
FILE_FIELD = {"file": {"type": "string", "format": "binary"}}
RESPONSES: dict[int | str, dict[str, Any]] = {code: {"model": DdddocrResponse} for code in (400, 404, 413, 422)}


def body_doc(*contents: tuple[str, dict]) -> dict:
    return {"requestBody": {"required": True, "content": {kind: {"schema": schema} for kind, schema in contents}}}


def form_schema(with_file: bool, required: list[str] | None = None) -> dict:
    schema: dict[str, Any] = {"type": "object", "properties": {**(FILE_FIELD if with_file else {}), **FORM_FIELDS}}
    if required:
        schema["required"] = required
    return schema


def as_bool(value: Any) -> bool:
    if isinstance(value, bool) or value is None:
        return bool(value)
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("", "0", "false", "no", "off"):
        return False
    raise ApiError(422, "invalid request", f"probability / png_fix must be true or false, got {str(value)[:40]!r}")


def failure(e: ApiError, start: float) -> JSONResponse:
    body = DdddocrResponse(code=e.status, message=e.error, error=e.error, detail=e.detail or e.error,
                           processing_time=time.perf_counter() - start)  # fmt: skip
    return JSONResponse(body.model_dump(mode="json"), status_code=e.status)


async def read_one(engines: Engines, settings: Settings, data: bytes | ApiError, probability: bool, charsets: Any,
                   model: str | None, start: float) -> DdddocrResponse:  # fmt: skip
    """Read one image as ddddocr would answer it: the text, or the probability dict."""
    if isinstance(data, ApiError):
        raise data
    engine = engines.pick(model)
    try:
        allowed = check_allowed(engine, resolve_ranges(form_ranges(charsets), engine.charset.symbols))
    except (TypeError, ValueError) as e:
        raise ApiError(400, "invalid charsets", str(e)) from None
    prepared, logits = await read_items(engines, engine, [("image", data)], settings)
    if logits is None:
        failed, status = prepared.failed[0]
        raise ApiError(status, failed.error, failed.detail)
    text = engine.decode(logits, allowed)[0].text
    result = probability_dict(logits[0], engine.charset.symbols, allowed, text) if probability else text
    return DdddocrResponse(code=200, message="Success", data=result, result=result,
                           processing_time=time.perf_counter() - start)  # fmt: skip


async def read_form(request: Request, engines: Engines, settings: Settings, start: float,
                    file_only: bool) -> DdddocrResponse:  # fmt: skip
    """A form request: the upload ``file`` or (unless ``file_only``) a base64 ``image``, with ``probability``,
    ``charsets`` and ``model``."""
    try:
        form = await request.form()
    except Exception as e:  # a body that is no form at all
        raise ApiError(400, "invalid request", f"send a form with `file` (or a base64 `image`) or JSON: {e}") from None
    upload, image = form.get("file"), form.get("image")
    if isinstance(upload, UploadFile):
        data = await read_upload(upload, settings.max_file_bytes)
    elif isinstance(image, str) and image.strip() and not file_only:
        data = decode_base64(image, settings.max_file_bytes)
    else:
        raise ApiError(400, "no image", "send the image as the multipart field `file`" if file_only
                       else "send `file` (an upload) or `image` (base64)")  # fmt: skip
    model = form.get("model")
    return await read_one(engines, settings, data, as_bool(form.get("probability")), form.get("charsets"),
                          model if isinstance(model, str) else None, start)  # fmt: skip


@router.post("/ocr", response_model=DdddocrResponse, responses=RESPONSES, openapi_extra=body_doc(
    ("multipart/form-data", form_schema(True)),
    ("application/x-www-form-urlencoded", form_schema(False, ["image"])),
    ("application/json", DdddocrJsonRequest.model_json_schema()),
))  # fmt: skip
async def ocr(request: Request, engines: EnginesDep, settings: SettingsDep) -> DdddocrResponse | JSONResponse:
    """ddddocr-fastapi's `/ocr` (a form with `file` or `image`) and ddddocr 1.6's `/ocr` (JSON), on one path."""
    start = time.perf_counter()
    try:
        if "application/json" in request.headers.get("content-type", ""):
            try:
                body = DdddocrJsonRequest.model_validate(await request.json())
            except (ValueError, ValidationError) as e:
                raise ApiError(422, "invalid request", str(e)[:500]) from None
            charsets = body.charsets if body.charsets is not None else body.charset_range
            data = decode_base64(body.image, settings.max_file_bytes)
            return await read_one(engines, settings, data, body.probability, charsets, body.model, start)
        return await read_form(request, engines, settings, start, file_only=False)
    except ApiError as e:
        return failure(e, start)


@router.post("/ocr/file", response_model=DdddocrResponse, responses=RESPONSES,
             openapi_extra=body_doc(("multipart/form-data", form_schema(True, ["file"]))))  # fmt: skip
async def ocr_file(request: Request, engines: EnginesDep, settings: SettingsDep) -> DdddocrResponse | JSONResponse:
    """ddddocr 1.6's `/ocr/file`: a multipart upload."""
    start = time.perf_counter()
    try:
        return await read_form(request, engines, settings, start, file_only=True)
    except ApiError as e:
        return failure(e, start)
