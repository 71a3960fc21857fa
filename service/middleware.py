"""ASGI middleware of the API: CORS (only when origins are configured) and the request-body cap."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from service.errors import ApiError, error_response
from service.settings import Settings


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
                    raise ApiError(413, "request too large")  # answered by the handler, then replaced
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
        response = error_response(413, "request too large", f"the body {size}; the limit is {self.max_bytes} bytes")
        await send({"type": "http.response.start", "status": 413, "headers": response.raw_headers})
        await send({"type": "http.response.body", "body": response.body})


def add_middleware(app: FastAPI, settings: Settings) -> None:
    """CORS for the configured origins, then the body cap (outermost, so it sees every request first)."""
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=settings.cors_credentials,
            allow_methods=["GET", "POST"],
            allow_headers=["Content-Type"],
        )
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_request_bytes)
