"""The demo page's server: static page, same-origin proxy, and its errors when the API misbehaves."""

from __future__ import annotations

import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from helpers import ROOT
from server_flask import create_app
from tools.servers import free_port


def upstream(handler) -> httpx.MockTransport:
    return httpx.MockTransport(handler)


def json_answer(request: httpx.Request) -> httpx.Response:
    """A stand-in API that echoes what it received."""
    if request.url.path == "/models":
        return httpx.Response(200, json=[{"name": "vanilla_crnn", "default": True}])
    if request.url.path == "/health":
        return httpx.Response(503, json={"status": "no models"})
    body = request.read()
    return httpx.Response(
        200,
        json={
            "path": request.url.path,
            "content_type": request.headers["content-type"],
            "size": len(body),
            "body": body.decode("latin-1"),
        },
    )


@pytest.fixture
def client():
    return create_app("http://api.invalid", transport=upstream(json_answer)).test_client()


def test_page_and_its_files_are_served_with_a_strict_policy(client):
    page = client.get("/")
    assert page.status_code == 200 and b'id="drop"' in page.data
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "connect-src 'self'" in policy
    for path in ("/static/app.js", "/static/app.css"):
        assert client.get(path).status_code == 200


def test_the_page_only_talks_to_its_own_origin():
    script = (ROOT / "static" / "app.js").read_text(encoding="utf-8")
    assert "const API = '/api';" in script
    assert "location.search" not in script and "?api" not in script  # no backend override from the URL
    assert "innerHTML" not in script and "insertAdjacentHTML" not in script  # server text goes in as text


def test_models_and_health_pass_through_with_their_status(client):
    models = client.get("/api/models")
    assert models.status_code == 200 and models.get_json()[0]["name"] == "vanilla_crnn"
    health = client.get("/api/health")
    assert health.status_code == 503 and health.get_json()["status"] == "no models"


def test_predict_forwards_files_and_fields(client):
    data = {
        "files": [(io.BytesIO(b"\x89PNG first"), "a<b>.png"), (io.BytesIO(b"GIF89a second"), "b.gif")],
        "model": "svtr_tiny",
        "arch": "svtr_tiny",
        "allowed": "digits",
        "other": "dropped",
    }
    response = client.post("/api/predict", data=data, content_type="multipart/form-data")
    assert response.status_code == 200
    echoed = response.get_json()
    assert echoed["path"] == "/predict" and echoed["content_type"].startswith("multipart/form-data")
    body = echoed["body"]
    assert 'filename="a<b>.png"' in body and "\x89PNG first" in body and "GIF89a second" in body
    assert 'name="model"' in body and 'name="arch"' in body and "svtr_tiny" in body and 'name="allowed"' in body
    assert 'name="other"' not in body


def test_predict_base64_forwards_json(client):
    response = client.post("/api/predict/base64", json={"image": "aGVsbG8=", "arch": "x"})
    echoed = response.get_json()
    assert echoed["path"] == "/predict/base64" and echoed["content_type"] == "application/json"
    assert json.loads(echoed["body"]) == {"image": "aGVsbG8=", "arch": "x"}


def test_upstream_down_is_502_in_words():
    client = create_app(f"http://127.0.0.1:{free_port()}", connect_timeout=1).test_client()
    for response in (client.get("/api/models"), client.post("/api/predict", data={"arch": "x"})):
        assert response.status_code == 502
        body = response.get_json()
        assert body["error"] == "recognition service unreachable" and "is it running" in body["detail"]


@pytest.fixture
def slow_server():
    class Slow(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            time.sleep(1.5)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_upstream_too_slow_is_504(slow_server):
    client = create_app(slow_server, read_timeout=0.3).test_client()
    start = time.monotonic()
    response = client.get("/api/models")
    assert time.monotonic() - start < 1.4  # gave up at the timeout, did not wait for the answer
    assert response.status_code == 504
    assert response.get_json()["error"] == "recognition service timed out"


def test_upstream_garbage_is_502():
    def garbage(request):
        return httpx.Response(200, content=b"<html>proxy error page</html>", headers={"content-type": "text/html"})

    client = create_app("http://api.invalid", transport=upstream(garbage)).test_client()
    response = client.get("/api/models")
    assert response.status_code == 502
    body = response.get_json()
    assert body["error"] == "bad answer from the recognition service" and "text/html" in body["detail"]


def test_upload_over_the_cap_is_413_without_reaching_the_api():
    calls = []

    def counting(request):
        calls.append(request)
        return httpx.Response(200, json={})

    client = create_app("http://api.invalid", max_upload_bytes=1000, transport=upstream(counting)).test_client()
    response = client.post(
        "/api/predict", data={"files": [(io.BytesIO(b"x" * 5000), "big.png")]}, content_type="multipart/form-data"
    )
    assert response.status_code == 413
    assert response.get_json()["error"] == "upload too large"
    assert calls == []


def test_unknown_api_route_is_json_404(client):
    response = client.get("/api/anything")
    assert response.status_code == 404 and response.get_json()["error"] == "not found"


def test_upstream_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("API_UPSTREAM", "http://10.0.0.5:9000/")
    assert create_app().config["UPSTREAM"] == "http://10.0.0.5:9000"
    assert create_app("http://127.0.0.1:7000").config["UPSTREAM"] == "http://127.0.0.1:7000"
