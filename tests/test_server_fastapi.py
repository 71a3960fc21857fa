"""The recognition API over TestClient: every endpoint, every limit and error, on real sample captchas."""

from __future__ import annotations

import base64
import io
import math
import shutil
import subprocess
import sys

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from helpers import REALDEV, ROOT, realdev_rows
from models.arith import solve
from models.engine import discover_models, load_engine
from server_fastapi import Settings, create_app


def sample(family: str, type_prefix: str = "") -> tuple[str, bytes, object]:
    """(filename, bytes, label row) of the first realdev image of ``family`` whose type starts with the prefix."""
    for path, row in realdev_rows(family):
        if row.extra.get("type", "").startswith(type_prefix):
            return path.name, path.read_bytes(), row
    pytest.skip(f"no {type_prefix!r} row in {REALDEV / family}")


@pytest.fixture(scope="module")
def checkpoints(serving_checkpoints):
    """(folder, default model trained?): shipped models plus decisive random ones (see conftest)."""
    return serving_checkpoints


@pytest.fixture(scope="module")
def client(checkpoints):
    with TestClient(create_app(Settings(checkpoints=checkpoints[0], threads=1))) as c:
        yield c


LIMITS = dict(max_file_bytes=30_000, max_request_bytes=200_000, max_files=3, max_pixels=1_000_000, max_frames=3)


@pytest.fixture(scope="module")
def strict(checkpoints):
    """The same models behind small limits."""
    with TestClient(create_app(Settings(checkpoints=checkpoints[0], threads=1, **LIMITS))) as c:
        yield c


def multipart(*items: tuple[str, bytes]) -> list:
    return [("files", (name, data, "application/octet-stream")) for name, data in items]


def check_result(result: dict, data: bytes, arch: str) -> None:
    with Image.open(io.BytesIO(data)) as image:
        assert (result["width"], result["height"]) == image.size
    assert result["arch"] == arch
    assert len(result["char_confidences"]) == len(result["text"])
    assert all(0 <= c <= 1 for c in result["char_confidences"])
    assert result["confidence"] == pytest.approx(math.prod(result["char_confidences"]), rel=1e-3, abs=1e-6)
    assert result["answer"] == solve(result["text"])
    assert result["ms"] > 0
    assert "error" not in result


# ---- health, models, docs ----
def test_health_lists_the_loaded_models(client):
    body = client.get("/health").json()
    assert body["status"] == "ok"
    assert body["default"] in body["models"] and len(body["models"]) >= 1
    assert body["limits"]["max_files"] == Settings().max_files


def test_models_describe_each_model_from_its_metadata(client, checkpoints):
    models = client.get("/models").json()
    assert sorted(m["name"] for m in models) == sorted(discover_models(checkpoints[0]))
    assert sum(m["default"] for m in models) == 1
    for m in models:
        meta = load_engine(checkpoints[0] / m["name"]).meta
        assert (m["arch"], m["img_h"], m["img_w"], m["channels"]) == (meta.arch, meta.img_h, meta.img_w, meta.channels)
        assert m["charset_size"] == len(meta.charset) and m["onnx_mb"] > 0
        assert str(checkpoints[0]) not in str(m)  # no server paths leak out


def test_openapi_docs_are_served(client):
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/health", "/models", "/predict", "/predict/base64"} <= set(paths)


# ---- /predict ----
def test_predict_reads_png_gif_and_arithmetic_like_the_engine(client, checkpoints):
    files = [sample("ruoyi"), sample("easy_gif"), sample("easy", "arith")]
    arch = client.get("/health").json()["default"]
    response = client.post("/predict", files=multipart(*[(n, d) for n, d, _ in files]))
    assert response.status_code == 200
    body = response.json()
    assert body["arch"] == arch and body["count"] == 3
    engine = load_engine(checkpoints[0] / arch)
    expected = engine.predict([d for _, d, _ in files])  # serving must equal the model core, GIF fusion included
    for (name, data, row), result, pred in zip(files, body["results"], expected, strict=True):
        assert result["filename"] == name
        check_result(result, data, arch)
        assert result["text"] == pred.text
        if checkpoints[1] and row.extra.get("answer"):  # trained models must solve the arithmetic captchas
            assert result["answer"] == int(row.extra["answer"]), (name, result["text"], row.label)


def test_predict_picks_the_model_and_ignores_the_tutorial_size_fields(client):
    name, data, _ = sample("ruoyi")
    other = sorted(client.get("/health").json()["models"])[-1]
    plain = client.post("/predict", files=multipart((name, data)), data={"arch": other}).json()
    tutorial = client.post("/predict", files=multipart((name, data)), data={"arch": other, "imgH": "64", "imgW": "180"})
    assert tutorial.status_code == 200
    assert plain["arch"] == other and plain["results"][0]["arch"] == other
    assert tutorial.json()["results"][0]["text"] == plain["results"][0]["text"]


def test_allowed_restricts_the_characters(client):
    name, data, _ = sample("easy", "spec")
    for allowed, chars in (
        ("digits", set("0123456789")),
        ("upper", set("ABCDEFGHIJKLMNOPQRSTUVWXYZ")),
        ("AB", {"A", "B"}),
    ):
        response = client.post("/predict", files=multipart((name, data)), data={"allowed": allowed})
        assert response.status_code == 200
        assert set(response.json()["results"][0]["text"]) <= chars


def test_allowed_with_no_known_character_is_refused(client):
    name, data, _ = sample("ruoyi")
    response = client.post("/predict", files=multipart((name, data)), data={"allowed": "\u2603"})
    assert response.status_code == 400
    assert response.json()["error"] == "invalid allowed"


def test_unknown_model_is_404_listing_the_known_ones(client):
    name, data, _ = sample("ruoyi")
    for arch in ("resnet152", "../../etc/passwd", "vanilla_crnn/../svtr_tiny"):
        response = client.post("/predict", files=multipart((name, data)), data={"arch": arch})
        assert response.status_code == 404
        body = response.json()
        assert body["error"] == "unknown model"
        assert body["detail"]["known"] == client.get("/health").json()["models"]


def test_not_an_image_is_400(client):
    response = client.post("/predict", files=multipart(("notes.txt", b"hello, not a picture")))
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "not an image" and "readable" in body["detail"]
    assert body["results"][0]["filename"] == "notes.txt"


def test_one_bad_file_does_not_fail_the_others(client):
    name, data, _ = sample("ruoyi")
    response = client.post("/predict", files=multipart((name, data), ("broken.png", data[:40]), ("empty.png", b"")))
    assert response.status_code == 200
    good, broken, empty = response.json()["results"]
    check_result(good, data, response.json()["arch"])
    assert broken["filename"] == "broken.png" and broken["error"] in ("not an image", "corrupt image data")
    assert set(broken) == {"filename", "error", "detail"}
    assert empty["error"] == "empty file"


def test_missing_files_is_a_json_error(client):
    response = client.post("/predict", data={"arch": "vanilla_crnn"})
    assert response.status_code == 422
    assert response.json()["error"] == "invalid request"
    assert response.json()["detail"][0]["field"] == "files"


def test_unknown_route_is_a_json_404(client):
    response = client.get("/nothing-here")
    assert response.status_code == 404 and response.json()["error"] == "not found"


# ---- /predict/base64 ----
def test_base64_accepts_data_urls_plain_strings_and_a_single_image(client):
    name, data, _ = sample("easy_gif")
    reference = client.post("/predict", files=multipart((name, data))).json()["results"][0]
    encoded = base64.b64encode(data).decode()
    body = {"images": [f"data:image/gif;base64,{encoded}", encoded], "filenames": [name]}
    response = client.post("/predict/base64", json=body)
    assert response.status_code == 200
    first, second = response.json()["results"]
    assert first["filename"] == name and second["filename"] == "image2"
    for result in (first, second):
        check_result(result, data, reference["arch"])
        assert result["text"] == reference["text"]
    single = client.post("/predict/base64", json={"image": encoded, "allowed": "digits"})
    assert single.status_code == 200 and set(single.json()["results"][0]["text"]) <= set("0123456789")


def test_base64_errors(client):
    _, data, _ = sample("ruoyi")
    encoded = base64.b64encode(data).decode()
    mixed = client.post("/predict/base64", json={"images": [encoded, "%%% not base64 %%%"]})
    assert mixed.status_code == 200
    assert mixed.json()["results"][1]["error"] == "not base64"
    bad = client.post("/predict/base64", json={"image": "data:image/png,rawbytes"})
    assert bad.status_code == 400 and bad.json()["error"] == "not base64"
    none = client.post("/predict/base64", json={"images": []})
    assert none.status_code == 400 and none.json()["error"] == "no images"
    unknown = client.post("/predict/base64", json={"image": encoded, "arch": "nope"})
    assert unknown.status_code == 404


def test_model_is_the_field_name_and_arch_still_works(client):
    """``model`` names the model in requests and responses; ``arch``, its older name, is still read and sent."""
    name, data, _ = sample("ruoyi")
    health = client.get("/health").json()
    other = next((m for m in health["models"] if m != health["default"]), health["default"])
    by_model = client.post("/predict", files=multipart((name, data)), data={"model": other}).json()
    by_arch = client.post("/predict", files=multipart((name, data)), data={"arch": other}).json()
    assert by_model["model"] == by_model["arch"] == by_arch["model"] == other
    assert by_model["results"][0]["model"] == by_model["results"][0]["arch"] == other
    assert by_model["results"][0]["text"] == by_arch["results"][0]["text"]
    encoded = base64.b64encode(data).decode()
    as_json = client.post("/predict/base64", json={"image": encoded, "model": other}).json()
    assert as_json["model"] == other and as_json["results"][0]["text"] == by_model["results"][0]["text"]
    assert client.post("/predict/base64", json={"image": encoded, "model": "nope"}).status_code == 404


def test_every_response_matches_the_openapi_schema(client):
    """What the API sends, success and every kind of failure, is what /openapi.json says it sends."""
    import httpx
    import schemathesis

    schema = schemathesis.openapi.from_dict(client.get("/openapi.json").json())
    name, data, _ = sample("ruoyi")
    encoded = base64.b64encode(data).decode()
    calls = [
        ("/health", "GET", client.get("/health")),
        ("/models", "GET", client.get("/models")),
        ("/predict", "POST", client.post("/predict", files=multipart((name, data), ("bad.png", b"not an image")))),
        ("/predict", "POST", client.post("/predict", files=multipart(("bad.png", b"not an image")))),
        ("/predict", "POST", client.post("/predict", files=multipart((name, data)), data={"model": "nope"})),
        ("/predict", "POST", client.post("/predict", data={"model": "x"})),
        ("/predict/base64", "POST", client.post("/predict/base64", json={"images": [encoded, "%%%"]})),
        ("/predict/base64", "POST", client.post("/predict/base64", json={"images": []})),
        ("/predict/base64", "POST", client.post("/predict/base64", json={"images": "not a list"})),
    ]
    for path, method, response in calls:
        schema[path][method].validate_response(response)
    assert {r.status_code for _, _, r in calls} >= {200, 400, 404, 422}
    # and the check has teeth: a result without its text is not what the schema allows
    good = calls[2][2].json()
    del good["results"][0]["text"]
    tampered = httpx.Response(200, json=good, request=calls[2][2].request)
    tampered.elapsed = calls[2][2].elapsed
    with pytest.raises(Exception, match="Response violates schema"):
        schema["/predict"]["POST"].validate_response(tampered)


# ---- limits ----
def test_file_over_the_byte_limit_is_413(strict):
    big = b"\x89PNG" + bytes(LIMITS["max_file_bytes"])
    response = strict.post("/predict", files=multipart(("big.png", big)))
    assert response.status_code == 413
    assert response.json()["error"] == "file too large"
    _, data, _ = sample("ruoyi")
    batch = strict.post("/predict", files=multipart(("ok.png", data), ("big.png", big)))
    assert batch.status_code == 200
    assert "text" in batch.json()["results"][0] and batch.json()["results"][1]["error"] == "file too large"
    b64 = strict.post("/predict/base64", json={"image": base64.b64encode(big).decode()})
    assert b64.status_code == 413 and b64.json()["error"] == "file too large"


def test_request_over_the_byte_limit_is_refused_from_its_content_length(strict):
    body = b"x" * (LIMITS["max_request_bytes"] + 1)
    response = strict.post("/predict", content=body, headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert response.status_code == 413
    assert response.json()["error"] == "request too large"
    assert str(LIMITS["max_request_bytes"] + 1) in response.json()["detail"]


def test_request_without_content_length_is_cut_off_while_streaming(strict):
    def chunks():  # no Content-Length: the body is counted as it arrives
        for _ in range(100):  # 100 x 10 KB, five times the limit
            yield b"y" * 10_000

    response = strict.post("/predict", content=chunks(), headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert response.status_code == 413
    assert response.json()["error"] == "request too large"


def test_too_many_files_is_413(strict):
    _, data, _ = sample("ruoyi")
    response = strict.post("/predict", files=multipart(*[(f"{i}.png", data) for i in range(LIMITS["max_files"] + 1)]))
    assert response.status_code == 413
    assert response.json()["error"] == "too many files"
    encoded = base64.b64encode(data).decode()
    b64 = strict.post("/predict/base64", json={"images": [encoded] * (LIMITS["max_files"] + 1)})
    assert b64.status_code == 413


def test_pixel_count_over_the_limit_is_400(strict):
    buffer = io.BytesIO()
    Image.new("L", (2000, 1000), 255).save(buffer, "PNG")  # 2 Mpx in a few KB
    response = strict.post("/predict", files=multipart(("huge.png", buffer.getvalue())))
    assert response.status_code == 400
    assert response.json()["error"] == "image too large"


def test_frame_count_over_the_limit_is_400(strict):
    name, data, _ = sample("easy_gif")
    with Image.open(io.BytesIO(data)) as image:
        assert image.n_frames > LIMITS["max_frames"]
    response = strict.post("/predict", files=multipart((name, data)))
    assert response.status_code == 400
    assert response.json()["error"] == "too many frames"


# ---- no models, settings, CORS ----
def test_without_models_health_and_predict_say_so(tmp_path):
    with TestClient(create_app(Settings(checkpoints=tmp_path))) as c:
        health = c.get("/health")
        assert health.status_code == 503 and health.json()["status"] == "no models"
        assert c.get("/models").json() == []
        response = c.post("/predict", files=multipart(("a.png", b"x")))
        assert response.status_code == 503 and "make train" in response.json()["detail"]


def test_a_broken_model_file_does_not_stop_the_others(checkpoints, tmp_path):
    source = checkpoints[0] / sorted(discover_models(checkpoints[0]))[0] / "model.onnx"
    (tmp_path / "good").mkdir()
    shutil.copy(source, tmp_path / "good" / "model.onnx")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "model.onnx").write_bytes(b"not onnx")
    with TestClient(create_app(Settings(checkpoints=tmp_path))) as c:
        health = c.get("/health").json()
        assert health["models"] == ["good"] and "bad" in health["failed"]


def test_settings_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CAPTCHA_CHECKPOINTS", str(tmp_path))
    monkeypatch.setenv("CAPTCHA_MAX_FILES", "5")
    monkeypatch.setenv("CAPTCHA_CORS_ORIGINS", "https://a.example, https://b.example")
    monkeypatch.setenv("CAPTCHA_CORS_CREDENTIALS", "1")
    s = Settings.from_env()
    assert s.checkpoints == tmp_path and s.max_files == 5 and s.cors_credentials
    assert s.cors_origins == ["https://a.example", "https://b.example"]
    monkeypatch.setenv("CAPTCHA_CORS_ORIGINS", "*")
    with pytest.raises(ValueError, match="credentials"):
        Settings.from_env()


def test_cors_allows_only_the_configured_origins(checkpoints):
    app = create_app(Settings(checkpoints=checkpoints[0], cors_origins=["https://ok.example"]))
    with TestClient(app) as c:
        allowed = c.get("/health", headers={"Origin": "https://ok.example"})
        assert allowed.headers.get("access-control-allow-origin") == "https://ok.example"
        assert "access-control-allow-credentials" not in allowed.headers
        other = c.get("/health", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
    with TestClient(create_app(Settings(checkpoints=checkpoints[0]))) as c:  # default: no CORS at all
        assert "access-control-allow-origin" not in c.get("/health", headers={"Origin": "https://ok.example"}).headers


def test_serving_does_not_import_torch():
    code = "import sys, server_fastapi, server_flask; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT, timeout=60).returncode == 0


def test_error_kind_comes_from_the_image_error_not_its_message(client, monkeypatch):
    from models import preprocess
    from models.preprocess import ImageError

    def reworded(*args, **kwargs):
        raise ImageError("this sentence names no kind at all", kind="too many frames")

    monkeypatch.setattr(preprocess, "load_image", reworded)
    r = client.post("/predict", files=[("files", ("a.png", b"anything", "image/png"))])
    entry = r.json()["results"][0]
    assert entry["error"] == "too many frames"
    assert entry["detail"] == "this sentence names no kind at all"
