"""The API's errors: every failure answers ``{"error": kind, "detail": ...}`` with a 4xx status (or 503)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.schemas import ErrorBody


class ApiError(Exception):
    """A refused request or file: ``status``, the machine-readable ``error`` kind and a ``detail`` for people."""

    def __init__(self, status: int, error: str, detail: Any = None) -> None:
        super().__init__(error)
        self.status, self.error, self.detail = status, error, detail

    def response(self) -> JSONResponse:
        return error_response(self.status, self.error, self.detail)


def error_response(status: int, error: str, detail: Any = None) -> JSONResponse:
    return JSONResponse(ErrorBody(error=error, detail=detail).model_dump(mode="json"), status_code=status)


async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
    return exc.response()


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    words = {404: "not found", 405: "method not allowed"}.get(exc.status_code, "request failed")
    return error_response(exc.status_code, words, exc.detail)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    detail = [{"field": ".".join(str(p) for p in e["loc"][1:]), "message": e["msg"]} for e in exc.errors()]
    return error_response(422, "invalid request", detail)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
