"""The drop-in paths for ddddocr users and the tutorial's clients: the ``captcha_ocr`` package (Reader and the
ddddocr-shaped class, with ddddocr's own README examples run with only the import changed), the ddddocr HTTP
routes called as their clients call them, and ``pip install .`` into a fresh virtual environment."""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import ROOT, realdev_rows

SAMPLE_FAMILIES = ("ruoyi", "easy", "hutool")


ANSWERS: dict[str, int] = {}  # label -> recorded answer of the arithmetic samples


@pytest.fixture(scope="module")
def samples() -> list[tuple[Path, str]]:
    """(path, label) of a few real captchas, RuoYi's arithmetic first (the default model reads all of them)."""
    found = []
    for family in SAMPLE_FAMILIES:
        for path, row in realdev_rows(family)[:6]:
            found.append((path, row.label))
            if row.extra.get("answer"):
                ANSWERS[row.label] = int(row.extra["answer"])
    return found


@pytest.fixture(scope="module")
def reader():
    from captcha_ocr import Reader

    return Reader()


def test_the_package_is_captcha_ocr_and_installs_nothing_called_models():
    import tomllib

    import captcha_ocr

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert all(p == "captcha_ocr" or p.startswith("captcha_ocr.") for p in config["packages"])
    assert "py-modules" not in config  # no top-level train / infer / server modules in site-packages
    assert captcha_ocr.models.__name__ == "captcha_ocr.models"


def test_reader_takes_bytes_paths_pil_numpy_and_batches(reader, samples):
    path, _ = samples[0]
    data = path.read_bytes()
    image = Image.open(path).convert("RGB")
    expected = reader.read(data)
    assert expected.text and 0 < expected.confidence <= 1 and len(expected.char_confidences) == len(expected.text)
    for source in (str(path), path, image, np.asarray(image), np.asarray(image.convert("L")),
                   np.asarray(image.convert("RGBA")), io.BytesIO(data)):  # fmt: skip
        assert reader.read(source).text == expected.text, type(source)
    batch = reader.read([p.read_bytes() for p, _ in samples])
    assert [r.text for r in batch] == [reader.read(p).text for p, _ in samples]
    assert str(batch[0]) == batch[0].text


def test_reader_answers_arithmetic_and_restricts_characters_per_call(reader, samples):
    ruoyi = [p for p, _ in samples if p.parent.name == "ruoyi"][0]
    reading = reader.read(ruoyi)
    assert reading.answer is not None and "=" in reading.text
    digits = reader.read(ruoyi, allowed="digits")
    assert digits.text and set(digits.text) <= set("0123456789")
    assert reader.read(ruoyi).text == reading.text  # the restriction was for that call only


def test_reader_says_what_is_wrong(reader, samples, tmp_path):
    from captcha_ocr import ImageError, Reader

    with pytest.raises(ImageError, match="image 1"):
        reader.read([samples[0][0].read_bytes(), b"not an image"])
    with pytest.raises(ImageError, match="uint8"):
        reader.read(np.zeros((10, 10), dtype=np.float32))
    with pytest.raises(TypeError, match="bytes, a path"):
        reader.read(12345)
    with pytest.raises(FileNotFoundError, match="vanilla_crnn_int8"):
        Reader(model="no-such-model")


# ---- ddddocr's class
def test_ddddocr_readme_examples_run_with_only_the_import_changed(samples, tmp_path, monkeypatch):
    """Every example of ddddocr's own README that reads text, taken from the installed ddddocr package; the image
    each one opens is a real RuoYi captcha, and what it prints is what our model reads."""
    ddddocr_pkg = pytest.importorskip("ddddocr")
    readme = Path(ddddocr_pkg.__file__).parent / "README.md"
    blocks = [textwrap.dedent(b) for b in re.findall(r"```python\n(.*?)```", readme.read_text(encoding="utf-8"), re.S)]
    text_blocks = [b for b in blocks if ("DdddOcr(" in b or "classification(" in b)
                   and not re.search(r"det=True|slide|for img in images", b)]  # fmt: skip
    assert len(text_blocks) >= 10
    sample, label = next((p, lab) for p, lab in samples if p.parent.name == "ruoyi")
    for name in set(re.findall(r"""["']([^"'/]+\.(?:jpg|png))["']""", "\n".join(text_blocks))):
        shutil.copyfile(sample, tmp_path / name)
    (tmp_path / "captchas").mkdir()
    for path, _ in samples[:3]:
        shutil.copyfile(path, tmp_path / "captchas" / path.name)
    shutil.copyfile(ROOT / "checkpoints" / "vanilla_crnn_int8" / "model.onnx", tmp_path / "mymodel.onnx")
    (tmp_path / "charsets.json").write_text("[]", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    prelude = (
        "from captcha_ocr import ddddocr\nocr = ddddocr.DdddOcr()\nimage = open('test.jpg', 'rb').read()\n"
        "import base64\nbase64_str = base64.b64encode(image).decode()\n"
    )  # what the fragments assume
    checked = 0
    for block in text_blocks:
        code = block.replace("import ddddocr", "from captcha_ocr import ddddocr")
        if "from captcha_ocr import ddddocr" not in code:
            code = prelude + code
        scope: dict = {}
        exec(compile(code, "ddddocr README", "exec"), scope)  # noqa: S102
        printed = scope.get("s") if "probability" in block else scope.get("result", scope.get("res"))
        if isinstance(printed, str) and not re.search(r"set_ranges|cv2", block):
            assert printed == label, (printed, block)
            checked += 1
        elif isinstance(scope.get("results"), dict):  # the batch and thread-pool examples over ./captchas/
            assert sorted(scope["results"]) == sorted(p.name for p, _ in samples[:3])
    assert checked >= 5


def test_ddddocr_probability_keeps_both_shapes_and_presets_match_the_readme(samples):
    from captcha_ocr import ddddocr

    ocr = ddddocr.DdddOcr(show_ad=False)
    path, label = next((p, lab) for p, lab in samples if p.parent.name == "ruoyi")
    image = path.read_bytes()
    result = ocr.classification(image, probability=True)
    assert {"text", "probabilities", "charset", "confidence", "charsets", "probability"} <= set(result)
    assert result["charset"][0] == "" and len(result["probabilities"][0][0]) == len(result["charset"])
    assert "".join(result["charsets"][row.index(max(row))] for row in result["probability"]) == result["text"]
    assert ocr.classification(image, answer=True) == str(ANSWERS[label])
    ocr.set_ranges(0)
    assert set(ocr.classification(image)) <= set("0123456789")
    digits = ocr.classification(image, probability=True)
    assert digits["charsets"] == ["", *"0123456789"] and len(digits["probability"][0]) == 11
    ocr.set_ranges("0123456789+-=?")
    assert ocr.classification(image) == label
    assert ocr.classification(base64.b64encode(image).decode()) == label  # a base64 str, as ddddocr takes
    for preset, chars in {1: "abc", 2: "ABC", 5: "A0", 6: "aZ9"}.items():
        assert set(chars) <= set(ddddocr.RANGE_PRESETS[preset])
    ocr.set_ranges(7)
    assert not set(ocr.classification(image)) & set(ddddocr.RANGE_PRESETS[6])
    ocr.set_ranges("5")  # a string is characters, as in ddddocr (not preset 5)
    assert set(ocr.classification(image)) <= {"5"}
    with pytest.raises(ValueError, match="0-7"):
        ocr.set_ranges(9)
    with pytest.raises(NotImplementedError, match="detection"):
        ddddocr.DdddOcr(det=True)


def test_one_ddddocr_instance_is_safe_to_share_between_threads(samples):
    from captcha_ocr import ddddocr

    ocr = ddddocr.DdddOcr(show_ad=False)
    images = [p.read_bytes() for p, _ in samples]
    expected = {(i, r): ocr.classification(images[i], ranges=r) for i in range(len(images)) for r in (0, 6, "")}
    errors, mismatches = [], []

    def work(seed: int) -> None:
        rng = np.random.default_rng(seed)
        try:
            for _ in range(30):
                i, r = int(rng.integers(len(images))), [0, 6, ""][int(rng.integers(3))]
                if (got := ocr.classification(images[i], ranges=r)) != expected[(i, r)]:
                    mismatches.append((i, r, got))
                ocr.set_ranges(int(rng.integers(8)))  # another thread's set_ranges never breaks a call
                ocr.classification(images[i])
        except Exception as e:  # pragma: no cover - what the test looks for
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and mismatches == []


# ---- HTTP: the clients of ddddocr-fastapi, ddddocr 1.6 and the tutorial
@pytest.fixture(scope="module")
def api(serving_checkpoints):
    from tools.servers import free_port, stop, uvicorn_command, wait_until_up

    port = free_port()
    env = {**os.environ, "CAPTCHA_CHECKPOINTS": str(serving_checkpoints[0]), "CAPTCHA_THREADS": "1"}
    proc = subprocess.Popen(uvicorn_command("127.0.0.1", port, 1, quiet=True), cwd=ROOT, env=env)
    url = f"http://127.0.0.1:{port}"
    assert wait_until_up(f"{url}/health", [proc], timeout=120, need_ok=True), "the API did not start"
    yield url
    stop([proc])


@pytest.mark.slow
def test_ddddocr_fastapi_clients_get_their_shape(api, samples):
    import requests

    path, _ = samples[0]
    encoded = base64.b64encode(path.read_bytes()).decode("utf-8")
    expected = subprocess.run([sys.executable, "-c", f"from captcha_ocr import Reader; print(Reader().read({str(path)!r}).text)"],
                              capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    # ddddocr-fastapi's README, Python: a urlencoded form with a base64 image
    data = {"image": encoded, "probability": False, "png_fix": False}
    body = requests.post(f"{api}/ocr", data=data, timeout=30).json()
    assert body["code"] == 200 and body["message"] == "Success" and body["data"] == expected
    # the same with a multipart upload and a per-request charset
    with open(path, "rb") as f:
        body = requests.post(f"{api}/ocr", files={"file": f}, data={"charsets": "0"}, timeout=30).json()
    assert body["code"] == 200 and set(body["data"]) <= set("0123456789")
    body = requests.post(f"{api}/ocr", data={"image": encoded, "probability": "true"}, timeout=30).json()
    assert body["data"]["text"] == expected and "charsets" in body["data"]
    reply = requests.post(f"{api}/ocr", data={"image": "%%%"}, timeout=30)
    assert reply.status_code == 400 and reply.json()["code"] == 400 and reply.json()["data"] is None


@pytest.mark.slow
def test_ddddocr_1_6_api_clients_get_their_shape(api, samples):
    import requests

    path, _ = samples[0]
    encoded = base64.b64encode(path.read_bytes()).decode("utf-8")
    json_reply = requests.post(f"{api}/ocr", json={"image": encoded, "probability": False}, timeout=30).json()
    assert isinstance(json_reply["result"], str) and json_reply["result"] and "processing_time" in json_reply
    with open(path, "rb") as f:
        file_reply = requests.post(f"{api}/ocr/file", files={"file": f}, data={"probability": "false"}, timeout=30)
    assert file_reply.status_code == 200 and file_reply.json()["result"] == json_reply["result"]
    limited = requests.post(f"{api}/ocr", json={"image": encoded, "charset_range": 0}, timeout=30).json()
    assert set(limited["result"]) <= set("0123456789")
    health = requests.get(f"{api}/health", timeout=30).json()
    assert health["status"] == "ok" and isinstance(health["timestamp"], float)
    docs = requests.get(f"{api}/openapi.json", timeout=30).json()["paths"]
    assert {"/ocr", "/ocr/file", "/health", "/predict"} <= set(docs)
    assert {"multipart/form-data", "application/json"} <= set(docs["/ocr"]["post"]["requestBody"]["content"])


@pytest.mark.slow
def test_the_tutorial_script_reads_pred_and_t(api, samples):
    """The tutorial's clients post `files`, `arch`, `imgH`, `imgW` and read `pred` and `T`."""
    import requests

    files = [("files", (p.name, p.read_bytes(), "image/png")) for p, _ in samples[:2]]
    body = requests.post(f"{api}/predict", files=files, data={"arch": "vanilla_crnn", "imgH": "32", "imgW": "160"},
                         timeout=30).json()  # fmt: skip
    assert body["count"] == 2 and body["arch"] == "vanilla_crnn"
    for result in body["results"]:
        assert result["pred"] == result["text"] and result["T"] > 0


# ---- pip install . into a fresh virtual environment
@pytest.mark.slow
def test_pip_install_gives_a_reader_without_torch(tmp_path, samples):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    build = tmp_path / "src"
    shutil.copytree(ROOT, build, ignore=shutil.ignore_patterns(".venv", ".git", "dataset", "runs", "build", "*.pt",
                                                                 "crnn_resnet34", "svtr_tiny", "node_modules"))  # fmt: skip
    done = subprocess.run([str(python), "-m", "pip", "install", "-q", str(build)], capture_output=True, text=True,
                          timeout=900)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    listed = subprocess.run([str(python), "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True)
    names = {line.split("==")[0].lower() for line in listed.stdout.splitlines()}
    assert "captcha-ocr" in names and "torch" not in names
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())  # fmt: skip
    assert not {"models", "tools", "bench", "service", "train.py", "infer.py"} & {p.name for p in site.iterdir()}
    path, label = next((p, lab) for p, lab in samples if p.parent.name == "ruoyi")
    code = (
        "import sys; from captcha_ocr import Reader, ddddocr; r = Reader().read(sys.argv[1]); "
        "print(r.text, r.answer, ddddocr.DdddOcr(show_ad=False).classification(open(sys.argv[1], 'rb').read()))"
    )
    out = subprocess.run([str(python), "-c", code, str(path)], cwd=tmp_path, capture_output=True, text=True,
                         timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    text, answer, compat = out.stdout.split()
    assert text == label == compat and int(answer) == ANSWERS[label]


def test_ddddocr_class_fuses_gif_frames():
    """An EasyCaptcha GIF hides a character in each frame: read from its first frame alone (what ddddocr does) the
    text is incomplete; the drop-in fuses the frames and reads it whole."""
    from captcha_ocr import ddddocr

    path, row = realdev_rows("easy_gif")[0]
    ocr = ddddocr.DdddOcr(show_ad=False)
    assert ocr.classification(path.read_bytes()).lower() == row.label.lower()
    with Image.open(path) as gif:
        first_frame = gif.convert("RGB")
    assert ocr.classification(first_frame).lower() != row.label.lower()
