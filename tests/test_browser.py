"""End to end in headless Chromium: uvicorn (API) and gunicorn (page + proxy) started for real on loopback.

Uploads three real captchas (a GIF and two arithmetic ones), checks the text and answer cells, switches model,
reloads and finds the history, clears it, and checks that a file name holding HTML stays text. Saves a
screenshot of the page with results to assets/page_demo.png. The labelling flow: low-confidence marks, a correction
kept by the history, and "Export dataset" giving a zip that the fine-tuning reader takes as it is.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from helpers import ROOT, realdev_rows
from models.arith import solve
from models.dataset import read_folder
from models.finetune import unpack_zip
from tools.servers import free_port, stop, uvicorn_command, wait_until_up

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# Debian's chromium (Playwright's own download does not work everywhere); CHROMIUM_PATH overrides; when none is
# found, Playwright's bundled browser (`python -m playwright install chromium`, e.g. on macOS) is tried.
CHROMIUM = next(
    (Path(p) for p in (os.environ.get("CHROMIUM_PATH"), shutil.which("chromium"), shutil.which("chromium-browser"),
                       "/usr/bin/chromium") if p and Path(p).is_file()),
    None,
)  # fmt: skip
SCREENSHOT = ROOT / "assets" / "page_demo.png"
XSS_NAME = "<img src=x onerror=window.__xss=1>.png"  # no quotes: browsers escape them in uploads


@pytest.fixture(scope="module")
def servers(serving_checkpoints, tmp_path_factory):
    """(page URL, default model trained?) with both servers running; stopped at the end."""
    checkpoints, trained = serving_checkpoints
    api_port, page_port = free_port(), free_port()
    env = {**os.environ, "CAPTCHA_CHECKPOINTS": str(checkpoints), "API_UPSTREAM": f"http://127.0.0.1:{api_port}"}
    logs = tmp_path_factory.mktemp("logs")
    api_cmd = uvicorn_command("127.0.0.1", api_port)
    page_cmd = [sys.executable, "-m", "gunicorn", "-w", "1", "--threads", "4", "-b", f"127.0.0.1:{page_port}",
                "server_flask:create_app()"]  # fmt: skip
    with open(logs / "api.log", "w") as api_log, open(logs / "page.log", "w") as page_log:
        procs = [
            subprocess.Popen(api_cmd, cwd=ROOT, env=env, stdout=api_log, stderr=subprocess.STDOUT),
            subprocess.Popen(page_cmd, cwd=ROOT, env=env, stdout=page_log, stderr=subprocess.STDOUT),
        ]
        try:
            assert wait_until_up(f"http://127.0.0.1:{api_port}/health", procs[:1], 60), (logs / "api.log").read_text()
            assert wait_until_up(f"http://127.0.0.1:{page_port}/healthz", procs[1:], 60), (
                logs / "page.log"
            ).read_text()
            yield f"http://127.0.0.1:{page_port}/", trained
        finally:
            stop(procs)


@pytest.fixture(scope="module")
def browser():
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        try:
            browser = p.chromium.launch(executable_path=str(CHROMIUM) if CHROMIUM else None, args=["--no-sandbox"])
        except Exception as e:  # no browser at all
            if os.environ.get("CI"):
                raise  # CI installs chromium (make test -> tools/system_deps.sh): a missing browser is a failure
            pytest.skip(
                f"no Chromium ({e.__class__.__name__}): apt-get install chromium, or playwright install chromium"
            )
        yield browser
        browser.close()


def first(family: str, type_prefix: str = ""):
    for path, row in realdev_rows(family):
        if row.extra.get("type", "").startswith(type_prefix):
            return path, row
    pytest.skip(f"no {type_prefix!r} image in {family}")


def result_cells(page) -> list[tuple[str, str, str]]:
    cards = page.locator("#results .result")
    return [
        (cards.nth(i).locator(".filename").text_content(), cards.nth(i).locator(".label-input").input_value(),
         cards.nth(i).locator(".answer").text_content())
        for i in range(cards.count())
    ]  # fmt: skip


def test_page_end_to_end(servers, browser):
    url, trained = servers
    samples = [first("ruoyi"), first("easy_gif"), first("easy", "arith")]
    # bypass_csp: the XSS check below must hold by textContent alone, not because the policy blocks inline code
    page = browser.new_page(viewport={"width": 1200, "height": 900}, locale="en-US", bypass_csp=True)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    page.wait_for_selector("#model option", state="attached")
    assert page.locator("#health").get_attribute("data-kind") == "ok"

    # keyboard: the drop zone is focusable and Enter or Space opens the file picker (counted, dialog suppressed)
    page.evaluate(
        """() => document.getElementById('file').addEventListener('click', (e) => {
             window.__picker = (window.__picker || 0) + 1; e.preventDefault(); })"""
    )
    page.focus("#drop")
    page.keyboard.press("Enter")
    page.keyboard.press(" ")
    assert page.evaluate("window.__picker") == 2
    page.set_input_files("#file", [str(path) for path, _ in samples])
    page.wait_for_selector("#pending li >> nth=2")
    assert "GIF" in page.locator("#pending li").nth(1).text_content()  # GIF preview with its frame count
    page.click("#submit")
    page.wait_for_selector("#results .result >> nth=2")
    cells = result_cells(page)
    assert [c[0] for c in cells] == [path.name for path, _ in samples]
    for (_, text, answer), (path, row) in zip(cells, samples, strict=True):
        expected = solve(text)
        assert answer == ("—" if expected is None else str(expected)), (path.name, text, answer)
        if trained and row.extra.get("answer"):
            assert answer == row.extra["answer"], (path.name, text, row.label)
    default_model = page.locator("#model").input_value()
    assert all(page.locator("#results .model-name").nth(i).text_content() == default_model for i in range(3))
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)

    # switch model, and a file name holding HTML stays text
    other = next(o for o in page.locator("#model option").all_inner_texts() if not o.startswith(default_model))
    other = other.split(" ")[0]
    page.select_option("#model", other)
    page.set_input_files(
        "#file", files=[{"name": XSS_NAME, "mimeType": "image/png", "buffer": samples[0][0].read_bytes()}]
    )
    page.wait_for_selector("#pending li")
    page.click("#submit")
    page.wait_for_function("document.querySelectorAll('#results .result').length === 1")
    assert page.locator("#results .filename").text_content() == XSS_NAME
    assert page.locator("#results .model-name").text_content() == other
    assert page.evaluate("window.__xss") is None
    assert page.locator("img[src='x']").count() == 0

    # reload: the model choice and the history (newest first) are still there
    page.wait_for_selector("#history tbody tr >> nth=3")  # written after the cards: wait before reloading
    page.reload()
    page.wait_for_selector("#model option", state="attached")
    assert page.locator("#model").input_value() == other
    rows = page.locator("#history tbody tr")
    assert rows.count() == 4
    assert rows.nth(0).locator(".filename").text_content() == XSS_NAME
    assert rows.nth(1).locator(".filename").text_content() == samples[0][0].name
    thumbs = page.locator("#history .history-thumb")
    assert all(thumbs.nth(i).get_attribute("src").startswith("data:image/jpeg") for i in range(thumbs.count()))

    # the language switch relabels the page and is remembered
    title_before = page.locator("h1").text_content()
    page.click("#lang")
    assert page.locator("h1").text_content() != title_before
    page.reload()
    page.wait_for_selector("#model option", state="attached")
    assert page.locator("html").get_attribute("lang") == "zh-CN"

    # clear the history; it stays cleared after a reload
    page.click("#clear-history")
    assert rows.count() == 0
    page.reload()
    page.wait_for_selector("#history-note")
    assert page.locator("#history tbody tr").count() == 0
    assert errors == []


def test_page_reports_a_full_storage_and_keeps_working(servers, browser):
    url, _ = servers
    path, _ = first("ruoyi")
    page = browser.new_page()
    page.goto(url)
    page.wait_for_selector("#model option", state="attached")
    # Make every write of a long history fail as a full quota would, then check the page drops old entries.
    page.evaluate(
        """() => {
        const old = Array.from({length: 150}, (_, i) => ({ts: i, filename: 'old' + i, text: 'x', thumb: ''}));
        localStorage.setItem('captcha_history_v1', JSON.stringify(old));
        const setItem = Storage.prototype.setItem;
        Storage.prototype.setItem = function (key, value) {
          if (key === 'captcha_history_v1' && value.length > 8000) {
            throw new DOMException('full', 'QuotaExceededError');
          }
          return setItem.call(this, key, value);
        };
      }"""
    )
    page.set_input_files("#file", [str(path)])
    page.wait_for_selector("#pending li")
    page.click("#submit")
    page.wait_for_selector("#results .result")
    # The history is written after the result cards (thumbnails are drawn first): wait for it, not for the cards.
    page.wait_for_selector('#history-note[data-kind="warn"]', timeout=15_000)
    assert page.locator("#history tbody tr").first.locator(".filename").text_content() == path.name
    assert 0 < page.locator("#history tbody tr").count() < 151


def noise_png() -> bytes:
    from PIL import Image

    pixels = np.random.default_rng(3).integers(0, 256, (60, 160, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def export_zip(page, tmp_path: Path, name: str) -> Path:
    with page.expect_download() as download:
        page.click("#export-dataset")
    path = tmp_path / name
    download.value.save_as(path)
    return path


def zipped_labels(path: Path) -> dict[str, str]:
    with zipfile.ZipFile(path) as z:
        assert z.testzip() is None  # every CRC matches
        lines = z.read("labels.txt").decode("utf-8").splitlines()
        images = {n for n in z.namelist() if n.startswith("images/")}
    labels = dict(line.split("\t") for line in lines)
    assert {f"images/{n}" for n in labels} == images
    return labels


def test_page_corrects_results_and_exports_a_dataset(servers, browser, tmp_path):
    url, _ = servers
    (ruoyi, _), (easy, _) = first("ruoyi"), first("easy", "spec")
    page = browser.new_page(viewport={"width": 1200, "height": 900}, locale="en-US", accept_downloads=True)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    page.wait_for_selector("#model option", state="attached")
    page.click("#clear-history")
    files = [{"name": p.name, "mimeType": "image/png", "buffer": p.read_bytes()} for p in (ruoyi, easy)]
    files.append({"name": "noise.png", "mimeType": "image/png", "buffer": noise_png()})
    page.set_input_files("#file", files=files)
    page.wait_for_selector("#pending li >> nth=2")
    page.click("#submit")
    page.wait_for_selector("#results .result >> nth=2")
    page.wait_for_selector("#history tbody tr >> nth=2")  # the history has the three (no eval: the page's CSP)

    # low confidence (below 90%) is marked on the card and in the history, and only there
    cards = page.locator("#results .result")
    low = []
    for i in range(3):
        confidence = float(cards.nth(i).locator(".confidence").text_content().rstrip("%")) / 100
        marked = "low" in cards.nth(i).get_attribute("class").split()
        assert marked == (confidence < 0.9), (i, confidence)
        low.append(marked)
    assert low[2], "random noise should not be read with confidence"
    rows = page.locator("#history tbody tr")
    assert ["low" in (rows.nth(i).get_attribute("class") or "") for i in range(3)] == low
    page.check("#review-only")
    assert rows.count() == sum(low)
    page.uncheck("#review-only")

    # correct the first result in place: Enter saves it, the history keeps it across a reload
    field = cards.nth(0).locator(".label-input")
    field.fill("  Ab 12 ")
    field.press("Enter")
    assert cards.nth(0).locator(".label-input").input_value() == "Ab12"
    assert "low" not in cards.nth(0).get_attribute("class").split()
    page.reload()
    page.wait_for_selector("#history tbody tr >> nth=2")
    first_row = rows.nth(0)
    assert first_row.locator(".filename").text_content() == ruoyi.name
    assert first_row.locator(".label-input").input_value() == "Ab12"
    assert first_row.locator(".corrected-badge").count() == 1

    # export: the unchecked noise result is left out, and once checked (Enter in the history) it is in
    labels = zipped_labels(export_zip(page, tmp_path, "first.zip"))
    assert len(labels) == 3 - sum(low[1:])
    assert list(labels.values())[0] == "Ab12"
    assert "Left out" in page.locator("#history-note").text_content()
    rows.nth(2).locator(".label-input").fill("noise")
    rows.nth(2).locator(".label-input").press("Enter")
    if low[1]:
        rows.nth(1).locator(".label-input").press("Enter")  # unchanged: confirms it
    archive = export_zip(page, tmp_path, "second.zip")
    labels = zipped_labels(archive)
    values = list(labels.values())
    assert len(values) == 3 and values[0] == "Ab12" and values[2] == "noise"

    # the zip is a folder make finetune reads as it is, with the original image bytes
    samples, report = read_folder(unpack_zip(archive, tmp_path / "unzipped"))
    assert [s.label for s in samples] == list(labels.values()) and not report.bad_lines
    assert samples[0].path.read_bytes() == ruoyi.read_bytes()
    assert errors == []


def test_the_tutorial_pages_fetch_works_against_us(servers, browser):
    """The reference tutorial's page, as reference-tutorial.md describes it: a same-origin POST of FormData
    ``arch, imgH, imgW, files...`` to ``/api/predict``, then ``count``, ``arch`` and each result's ``pred`` (or
    ``error``) shown. Run in Chromium from our page's origin, the way the tutorial's page runs from its own."""
    url, trained = servers
    (ruoyi, row) = first("ruoyi")
    page = browser.new_page()
    page.goto(url)
    body = page.evaluate(
        """async ([name, bytes]) => {
            const fd = new FormData();
            fd.append('arch', 'vanilla_crnn');
            fd.append('imgH', '32');
            fd.append('imgW', '160');
            fd.append('files', new Blob([new Uint8Array(bytes)], {type: 'image/png'}), name);
            fd.append('files', new Blob([new Uint8Array([1, 2, 3])], {type: 'image/png'}), 'broken.png');
            const r = await fetch(location.origin + '/api/predict', {method: 'POST', body: fd});
            return {status: r.status, json: await r.json()};
        }""",
        [ruoyi.name, list(ruoyi.read_bytes())],
    )
    assert body["status"] == 200
    reply = body["json"]
    assert reply["count"] == 2 and reply["arch"] == "vanilla_crnn"
    good, bad = reply["results"]
    assert good["filename"] == ruoyi.name and good["pred"] == good["text"] and good["T"] > 0
    if trained:
        assert good["pred"] == row.label
    assert bad["filename"] == "broken.png" and bad["error"]
