"""README.md and the model cards: their figures are the results file's, and their commands exist."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

from bench import results as results_file
from helpers import ROOT
from models.engine import discover_models

DOCUMENTS = results_file.documents()
SHIPPED = discover_models(ROOT / "checkpoints")


def test_every_document_agrees_with_the_results_file():
    problems = results_file.disagreements(results_file.load(), DOCUMENTS)
    assert not problems, "\n".join(problems) + "\nrun: python bench/results.py"


def test_the_results_file_covers_every_shipped_model_and_ddddocr():
    accuracy = results_file.load()["accuracy"]
    assert set(accuracy["readers"]) == {*SHIPPED, "ddddocr"}
    assert set(accuracy["models"]) == set(SHIPPED)
    assert (ROOT / "checkpoints" / "default").read_text().strip() == accuracy["default_model"]
    for key in ("cpu", "cores", "date", "versions"):
        assert accuracy["machine"][key], key
    for reader in accuracy["readers"].values():
        assert {"easy", "easy_gif", "ctext", "ruoyi", "realdev"} <= set(reader["groups"])


def test_every_shipped_model_has_a_card():
    cards = [path for path, model in DOCUMENTS if model and model != results_file.ARCHITECTURES_KEY]
    assert sorted(path.parent.name for path in cards) == sorted(SHIPPED)
    for card in cards:
        text = card.read_text(encoding="utf-8")
        for heading in ("## Data", "## The command that produced it", "## Limitations", "## Latency"):
            assert heading in text, f"{card}: no {heading!r}"


def test_a_changed_figure_or_a_missing_block_is_reported(tmp_path):
    results = results_file.load()
    readme = tmp_path / "README.md"
    text = results_file.README.read_text(encoding="utf-8")
    body = results_file.render_accuracy(results)
    cell = re.search(r"\d+\.\d%", body).group()
    readme.write_text(text.replace(cell, "12.3%", 1), encoding="utf-8")
    assert results_file.disagreements(results, [(readme, None)]) == [f"{readme}: figures differ from the results "
                                                                     "file (run bench/results.py)"]  # fmt: skip
    begin, end = results_file.marker("speed"), results_file.marker("speed", end=True)
    readme.write_text(re.sub(re.escape(begin) + ".*?" + re.escape(end), "", text, flags=re.DOTALL), encoding="utf-8")
    assert "no <!-- results:speed begin -->" in results_file.disagreements(results, [(readme, None)])[0]
    assert results_file.disagreements(results, [(tmp_path / "gone.md", None)]) == [f"{tmp_path / 'gone.md'}: missing"]


def test_blocks_are_replaced_everywhere_and_the_rest_is_kept():
    a, b = results_file.marker("speed"), results_file.marker("speed", end=True)
    text = f"intro\n{a}\nold\n{b}\nmiddle\n{a}\n{b}\nend\n"
    assert (
        results_file.replace_blocks(text, {"speed": "new\n"}) == f"intro\n{a}\nnew\n{b}\nmiddle\n{a}\nnew\n{b}\nend\n"
    )
    with pytest.raises(ValueError, match="results:accuracy"):
        results_file.replace_blocks(text, {"accuracy": "x"})


def test_empty_sections_say_which_command_fills_them():
    assert "make eval" in results_file.render_accuracy({})
    assert "make bench" in results_file.render_speed({}) and "make bench" in results_file.render_speed({}, True)
    assert "make bench" in results_file.render_card_speed({}, "vanilla_crnn")


def test_the_speed_section_comes_from_the_inference_and_service_stages():
    inference = {
        "settings": {"threads": 2},
        "default_model": "m",
        "models": [
            {"name": "m", "input": "48x160x1", "backends": [
                {"backend": "onnxruntime int8 (shipped)", "p50_ms": 1.5, "batch_img_s": {"median": 600.0}}]},
        ],  # fmt: skip
        "ddddocr": {"speed": {"images": 24, "source": "real PNG captchas", "readers": [
            {"reader": "ours: m", "p50_ms": 3.0, "ratio_vs_ddddocr": {"median": 0.4}},
            {"reader": "ddddocr", "p50_ms": 7.5}]}},
    }  # fmt: skip
    service = {"levels": [{"concurrency": 1, "rps": 90.0, "workers": 1}, {"concurrency": 8, "rps": 210.0, "workers": 1},
                          {"concurrency": 8, "rps": 250.0, "workers": 2}]}  # fmt: skip
    section = results_file.speed_section(inference, service, quick=False)
    assert section["models"]["m"]["speedup_vs_ddddocr"] == pytest.approx(2.5)
    assert section["service"] == {"concurrency": 8, "rps": 250.0, "workers": 2}
    results = {"speed": {"machine": {"cpu": "cpu", "cores": 2, "date": "d"}, **section}}
    line = results_file.render_speed(results)
    assert "3.0 ms" in line and "ddddocr 7.5 ms (2.5x faster)" in line and "250 requests/s" in line
    assert "1.50 ms" in results_file.render_card_speed(results, "m")


# ---- the commands written in the documents


def shell_commands(text: str) -> list[list[str]]:
    """The commands of every ```bash block (continuation lines joined, comments dropped), as argument lists."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.split(r"\s+#\s", line, maxsplit=1)[0].strip()
            if line and not line.startswith("#"):
                commands.append(shlex.split(line))
    return commands


@cache
def make_targets() -> set[str]:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    return set(re.findall(r"^([a-zA-Z_-]+):", makefile, flags=re.MULTILINE))


@cache
def help_text(script: str) -> str:
    done = subprocess.run(
        [sys.executable, script, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, f"{script} --help failed: {done.stderr[-2000:]}"
    return done.stdout


def check_command(words: list[str]) -> None:
    program = words[0]
    if program == "make":
        targets = [w for w in words[1:] if "=" not in w]
        assert set(targets) <= make_targets(), f"{shlex.join(words)}: no such Makefile target"
    elif program == "python":
        script = words[1]
        assert (ROOT / script).is_file(), f"{shlex.join(words)}: no {script}"
        flags = {w.split("=", 1)[0] for w in words[2:] if w.startswith("--")}
        missing = [flag for flag in sorted(flags) if not re.search(rf"{re.escape(flag)}\b", help_text(script))]
        assert not missing, f"{shlex.join(words)}: {script} --help does not list {missing}"
    elif program == "curl":
        for upload in re.findall(r"=@([^;\s]+)", " ".join(words)):
            assert (ROOT / upload).is_file(), f"{shlex.join(words)}: no {upload} to upload"
    else:
        assert program == "source", f"unexpected command {shlex.join(words)}"


@pytest.mark.parametrize("document", [path for path, _ in DOCUMENTS], ids=lambda p: str(p.relative_to(ROOT)))
def test_every_command_in_a_document_exists(document):
    text = document.read_text(encoding="utf-8")
    commands = shell_commands(text)
    assert commands, "no ```bash block"
    for words in commands:
        check_command(words)
    for target in re.findall(r"`make ([a-z-]+)", text):
        assert target in make_targets(), f"`make {target}`: no such Makefile target"


def anchors(document: Path) -> set[str]:
    """GitHub's heading anchors of a markdown file: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#+ (.+)$", document.read_text(encoding="utf-8"), flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


LINKED = [path for path, _ in DOCUMENTS] + sorted((ROOT / "docs").glob("*.md"))


@pytest.mark.parametrize("document", LINKED, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_local_link_resolves(document):
    for link, anchor in re.findall(r"\]\(([^)#]*)(?:#([^)]*))?\)", document.read_text(encoding="utf-8")):
        if link.startswith("http"):
            continue
        target = document.parent / link if link else document
        assert target.exists(), f"{document.name}: broken link {link}"
        if anchor and target.suffix == ".md":
            assert anchor in anchors(target), f"{document.name}: no heading #{anchor} in {link or 'itself'}"


def test_the_readme_is_short_and_chinese_first():
    text = results_file.README.read_text(encoding="utf-8")
    assert len(text) < 9500, len(text)
    assert text.index("## 两条命令") < text.index("## English") < text.index("### Two commands")
    assert "assets/page_demo.png" in text and Path(ROOT / "assets" / "page_demo.png").is_file()


def test_the_readme_sample_captcha_is_read_by_the_default_model():
    """The curl and Python examples upload assets/captcha.png (drawn by our EasyCaptcha runner, text hZPrv)."""
    from models.engine import default_model_name, load_engine
    from models.paths import CHECKPOINTS

    engine = load_engine(CHECKPOINTS / default_model_name(CHECKPOINTS))
    assert [p.text for p in engine.predict([ROOT / "assets" / "captcha.png"])] == ["hZPrv"]
