"""Single-page captcha demo plus a same-origin proxy to the recognition API.

    python server_flask.py --host 0.0.0.0 --port 8001 --upstream http://127.0.0.1:8000   # development server
    gunicorn -w 2 --threads 4 -b 0.0.0.0:8001 'server_flask:create_app()'                # production (make ready)

The page (``static/``) talks only to ``/api/*`` on its own origin; this app forwards those calls to the API
fixed at start (``--upstream`` or ``API_UPSTREAM``). The browser cannot choose another backend, so only one port
has to be public and user images go nowhere else.

| route | forwards to |
|---|---|
| ``GET /api/health`` | ``GET /health`` |
| ``GET /api/models`` | ``GET /models`` |
| ``POST /api/predict`` | ``POST /predict`` (multipart: ``files``, ``model`` (or its old name ``arch``), ``allowed``) |
| ``POST /api/predict/base64`` | ``POST /predict/base64`` (JSON) |

Errors are JSON ``{"error", "detail"}``: 502 when the API is down or answers something that is not JSON, 504
when it is too slow, 413 when the upload is over ``max_upload_bytes``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import httpx
from flask import Flask, Response, jsonify, request, send_from_directory
from werkzeug.exceptions import HTTPException

STATIC = Path(__file__).resolve().parent / "static"
DEFAULT_UPSTREAM = "http://127.0.0.1:8000"
MAX_UPLOAD_BYTES = 16 * 1024 * 1024  # same as the API's default request limit
CONNECT_TIMEOUT_S = 3.0  # a local API that does not accept within this is down
READ_TIMEOUT_S = 60.0  # a large batch on a busy CPU; beyond that the page says "timed out"


def create_app(
    upstream: str | None = None,
    *,
    max_upload_bytes: int = MAX_UPLOAD_BYTES,
    connect_timeout: float = CONNECT_TIMEOUT_S,
    read_timeout: float = READ_TIMEOUT_S,
    transport: httpx.BaseTransport | None = None,
) -> Flask:
    """The demo app. ``upstream`` defaults to ``API_UPSTREAM``, else ``http://127.0.0.1:8000``;
    ``transport`` lets tests replace the network."""
    upstream = (upstream or os.environ.get("API_UPSTREAM") or DEFAULT_UPSTREAM).rstrip("/")
    app = Flask(__name__, static_folder=str(STATIC), static_url_path="/static")
    app.config["MAX_CONTENT_LENGTH"] = max_upload_bytes  # werkzeug answers 413 before reading the body
    app.config["UPSTREAM"] = upstream
    timeout = httpx.Timeout(read_timeout, connect=connect_timeout)
    client = httpx.Client(base_url=upstream, timeout=timeout, transport=transport)

    def error(status: int, message: str, detail: str) -> tuple[Response, int]:
        return jsonify(error=message, detail=detail), status

    def forward(method: str, path: str, **kwargs) -> tuple[Response, int]:
        try:
            answer = client.request(method, path, **kwargs)
        except httpx.TimeoutException:
            return error(504, "recognition service timed out",
                         f"the API at {upstream} did not answer within {read_timeout:g} s")  # fmt: skip
        except httpx.HTTPError as e:
            return error(502, "recognition service unreachable",
                         f"cannot reach the API at {upstream} ({type(e).__name__}); is it running?")  # fmt: skip
        try:
            body = answer.json()
        except ValueError:
            kind = answer.headers.get("content-type", "no content type")
            return error(502, "bad answer from the recognition service",
                         f"the API answered status {answer.status_code} with {kind}, not JSON")  # fmt: skip
        return jsonify(body), answer.status_code

    @app.get("/")
    def index() -> Response:
        response = send_from_directory(STATIC, "index.html")
        response.headers["Cache-Control"] = "no-cache"
        return response

    @app.get("/api/health")
    def health():
        return forward("GET", "/health")

    @app.get("/api/models")
    def models():
        return forward("GET", "/models")

    @app.post("/api/predict")
    def predict():
        uploads = request.files.getlist("files")  # reading the form enforces MAX_CONTENT_LENGTH
        files = [
            ("files", (f.filename or "upload", f.stream, f.mimetype or "application/octet-stream")) for f in uploads
        ]
        data = {k: v for k, v in request.form.items() if k in ("model", "arch", "allowed", "imgH", "imgW")}
        return forward("POST", "/predict", files=files, data=data)

    @app.post("/api/predict/base64")
    def predict_base64():
        body = request.get_data(cache=False)
        return forward("POST", "/predict/base64", content=body, headers={"Content-Type": "application/json"})

    @app.get("/healthz")
    def healthz():
        return jsonify(ok=True, upstream=upstream)

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException):
        if e.code == 413:
            return error(413, "upload too large", f"the limit is {max_upload_bytes // (1024 * 1024)} MB per request")
        return error(e.code or 500, e.name.lower(), e.description or "")

    @app.after_request
    def security_headers(response: Response) -> Response:
        # The page loads only its own files and talks only to its own origin.
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
            "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
        )
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        return response

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve the captcha demo page and proxy /api/* to the API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--upstream", default=None, help=f"the API (default: API_UPSTREAM or {DEFAULT_UPSTREAM})")
    args = parser.parse_args()
    app = create_app(args.upstream)
    print(f"demo page: http://{args.host}:{args.port}  (API: {app.config['UPSTREAM']})")
    app.run(host=args.host, port=args.port, threaded=True, debug=False)  # development only; make ready uses gunicorn


if __name__ == "__main__":
    main()
