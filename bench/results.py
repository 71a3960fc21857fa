"""The one results file (docs/results.json) and the figure blocks rendered from it into README.md and the model cards.

    python bench/results.py                  # rewrite every marked block of README.md and checkpoints/*/README.md
    python bench/results.py --check          # exit 1 when a document disagrees with the results file
    python bench/results.py --results reports/bench/results.json --preview reports/bench/preview

`make eval` (bench/compare_realdev.py) writes its ``accuracy`` section, `make bench` (bench/run_all.py) its
``speed`` section; each section records the machine it came from. Then both rewrite the blocks between
``<!-- results:NAME begin -->`` and ``<!-- results:NAME end -->`` in every document. Figures shown to users come
only from this file; tests/test_docs.py fails when a document and the file disagree.

Blocks: README.md holds ``accuracy`` (one table: every shipped model and ddddocr per realdev family), ``speed``
and ``speed-zh``, ``ddddocr`` and ``ddddocr-zh`` (one line each); a model card ``checkpoints/<name>/README.md`` holds ``accuracy`` and ``speed`` for
that model, and ``model`` (input, parameters, file sizes).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from models.engine import Engine
from models.paths import ROOT, checkpoints_dir
from models.report import METRIC_NAMES, REALDEV_ALL, Scored, md_table, percent, reads_correctly, target_table

RESULTS = ROOT / "docs" / "results.json"
README = ROOT / "README.md"
ARCHITECTURES = ROOT / "docs" / "architectures.md"
ARCHITECTURES_KEY = ":architectures"  # the "model" of docs/architectures.md in documents()
MAX_TYPES_SHOWN = 10  # a card lists a family's types only up to this many (ctext has 18 styles)
READ_RULE = "read correctly: the answer for arithmetic captchas, else exact match ignoring case"


# ---- the machine a section was measured on


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    if sys.platform == "darwin":
        done = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True)
        if done.returncode == 0 and done.stdout.strip():
            return done.stdout.strip()
    return platform.processor() or platform.machine()


def ram_gb() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 2**20:.0f} GB"
    except OSError:
        pass
    return "unknown"


def gpu() -> str:
    if shutil.which("nvidia-smi"):
        done = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
        if done.returncode == 0 and done.stdout.strip():
            return "; ".join(done.stdout.strip().splitlines())
    return "none"


def java_version() -> str:
    if not shutil.which("java"):
        return "not installed"
    done = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=60)
    lines = (done.stderr or done.stdout).strip().splitlines()
    return lines[0] if lines else "unknown"


def package_versions() -> str:
    out = [f"Python {platform.python_version()}"]
    for name in ("torch", "onnxruntime", "numpy", "Pillow", "ddddocr"):
        try:
            out.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            out.append(f"{name} not installed")
    return ", ".join(out) + f", Java: {java_version()}"


def git_commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True)
    except OSError:
        return "unknown"
    if head.returncode != 0:
        return "unknown"
    return head.stdout.strip() + (" with uncommitted changes" if dirty.stdout.strip() else "")


def machine() -> dict:
    """Where and when a section was measured: CPU model, logical cores, RAM, GPU, versions, commit, UTC date."""
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "ram": ram_gb(),
        "gpu": gpu(),
        "versions": package_versions(),
        "commit": git_commit(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def relative(path: Path) -> str:
    """``path`` relative to the repository when it is inside it or beside it (``../shared/...``), else absolute."""
    path = Path(path).resolve()
    return os.path.relpath(path, ROOT) if path.is_relative_to(ROOT.parent) else str(path)


# ---- the file


def load(path: Path = RESULTS) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8")) if Path(path).is_file() else {}


def update(path: Path, name: str, section: dict) -> dict:
    """Replace section ``name`` of the results file (creating it), stamped with this machine; return the whole."""
    results = load(path)
    results[name] = {"machine": machine(), **section}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(results, indent=2, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return results


def read_rates(rows: Iterable[Scored]) -> dict[str, tuple[float, int]]:
    """{group: (share read correctly, n)} for all rows, the real captchas (``realdev``), per source and per
    source/type."""
    groups: dict[str, list[bool]] = defaultdict(list)
    for row in rows:
        ok = reads_correctly(row.pred, row.label, row.answer)
        real = "realdev" if row.source in REALDEV_ALL else ""
        for key in ("all", real, row.source, f"{row.source}/{row.type}" if row.type else ""):
            if key:
                groups[key].append(ok)
    order = ["all"] + sorted(k for k in groups if k != "all")
    return {k: (sum(groups[k]) / len(groups[k]), len(groups[k])) for k in order}


def model_info(engine: Engine, folder: Path) -> dict:
    """What a model card shows about one shipped model's files: input, parameters, charset size, sizes in MB."""
    meta = engine.meta
    metrics = meta.metrics or {}
    best = folder / "best.pt"
    return {
        "arch": meta.arch,
        "input": f"{meta.img_h}x{meta.img_w}x{meta.channels}",
        "parameters": metrics.get("parameters"),
        "charset_size": len(meta.charset),
        "onnx_mb": round(Path(engine.path).stat().st_size / 1e6, 1),
        "best_pt_mb": round(best.stat().st_size / 1e6, 1) if best.is_file() else None,
    }


def accuracy_section(
    readers: dict[str, list[Scored]], default: str | None, folders: Sequence[Path], models: dict[str, dict]
) -> dict:
    """What `make eval` records: per reader (model name or ``ddddocr``) the read rate per group and its targets,
    and per shipped model its files (model_info)."""
    return {
        "command": "make eval",
        "models": models,
        "folders": [relative(f) for f in folders],
        "default_model": default,
        "rule": READ_RULE,
        "readers": {
            name: {
                "groups": {g: {"read": v, "n": n} for g, (v, n) in read_rates(rows).items()},
                "targets": [{k: t[k] for k in ("name", "metric", "n", "value", "target")} for t in target_table(rows)],
            }
            for name, rows in readers.items()
        },
    }


def speed_section(inference: dict, service: dict | None, quick: bool) -> dict:
    """What `make bench` records from its inference stage (and service stage when it ran)."""
    bytes_rows = {r["reader"].removeprefix("ours: "): r for r in inference["ddddocr"]["speed"]["readers"]}
    models = {}
    for model in inference["models"]:
        shipped = model["backends"][0]  # the shipped onnxruntime file comes first
        row = bytes_rows.get(model["name"], {})
        ratio = row.get("ratio_vs_ddddocr")
        models[model["name"]] = {
            "input": model["input"],
            "backend": shipped["backend"],
            "network_p50_ms": shipped["p50_ms"],
            "batch_img_s": shipped["batch_img_s"]["median"],
            "bytes_p50_ms": row.get("p50_ms"),
            "speedup_vs_ddddocr": 1 / ratio["median"] if ratio else None,
        }
    speed = inference["ddddocr"]["speed"]
    section = {
        "command": "make bench QUICK=1" if quick else "make bench",
        "quick": quick,
        "threads": inference["settings"]["threads"],
        "default_model": inference["default_model"],
        "bytes_images": f"{speed['images']} {speed['source']}",
        "ddddocr_bytes_p50_ms": bytes_rows.get("ddddocr", {}).get("p50_ms"),
        "models": models,
    }
    if service:
        at8 = [r for r in service["levels"] if r["concurrency"] == 8]
        if at8:
            best = max(at8, key=lambda r: r["rps"])
            section["service"] = {"concurrency": 8, "rps": best["rps"], "workers": best["workers"]}
    return section


# ---- rendering


def pct(value: float | None) -> str:
    """A share as a percentage with one decimal, ``-`` when there is none (bench tables)."""
    return percent(value, 1) or "-"


def reader_order(accuracy: dict) -> list[str]:
    """The default model first, then the model it was made from (``vanilla_crnn`` for ``vanilla_crnn_int8``), the
    other models by name, ddddocr last."""
    names = list(accuracy["readers"])
    default = accuracy.get("default_model") or ""
    models = sorted((n for n in names if n not in ("ddddocr", default)), key=lambda n: (not default.startswith(n), n))
    return [n for n in [default, *models, "ddddocr"] if n in names]


def families(accuracy: dict) -> list[str]:
    present = {g for r in accuracy["readers"].values() for g in r["groups"]}
    return [f for f in REALDEV_ALL if f in present]


def stamp(section: dict) -> str:
    m = section["machine"]
    return f"`{section['command']}`, {m['date']}, {m['cpu']} ({m['cores']} logical CPUs)"


def render_accuracy(results: dict) -> str:
    accuracy = results.get("accuracy")
    if not accuracy:
        return "_No accuracy figures yet: run `make eval`._"
    names = reader_order(accuracy)
    version_of = {"ddddocr": "ddddocr " + accuracy.get("ddddocr_version", "")}
    headers = ["family", "n"] + [
        f"{n} (default)" if n == accuracy.get("default_model") else version_of.get(n, n).strip() for n in names
    ]
    rows = []
    for group in [*families(accuracy), "realdev"]:
        cells = [accuracy["readers"][n]["groups"].get(group) for n in names]
        n = next(c["n"] for c in cells if c)
        rows.append(["**all**" if group == "realdev" else group, n, *(pct(c and c["read"]) for c in cells)])
    note = f"Real captchas of `../shared/realdev`, {READ_RULE}; {stamp(accuracy)}."
    return md_table(headers, rows, [False] + [True] * (len(headers) - 1)) + "\n\n" + note


ZERO_SHOT_PACKAGES = {"imagecaptcha": "captcha", "wheezy": "wheezy.captcha"}  # set -> its PyPI package


def render_zero_shot(results: dict) -> str:
    """Captcha libraries never trained on (bench/zero_shot.py): the default model beside ddddocr, per set."""
    zero = results.get("zero_shot")
    if not zero:
        return "_No zero-shot figures yet: run `make eval`._"
    headers = ["zero-shot set", "n", zero["model"], "ddddocr " + zero.get("ddddocr_version", "")]
    rows = []
    for name, found in zero["sets"].items():
        package = ZERO_SHOT_PACKAGES.get(name, name)
        whole = found["groups"]["all"]
        ours, theirs = whole["ours"], whole.get("ddddocr") or {}
        rows.append([f"`{package}` {zero.get('libraries', {}).get(package, '')}".strip(), whole["n"],
                     f"{pct(ours['em'])} / {pct(ours['em_nocase'])}",
                     f"{pct(theirs.get('em'))} / {pct(theirs.get('em_nocase'))}"])  # fmt: skip
    note = f"Exact match / ignoring case (ddddocr: its better model); {stamp(zero)}."
    return md_table(headers, rows, [False, True, True, True]) + "\n\n" + note


def render_card_accuracy(results: dict, name: str) -> str:
    accuracy = results.get("accuracy")
    reader = accuracy and accuracy["readers"].get(name)
    if not reader:
        return f"_No accuracy figures for `{name}` yet: run `make eval`._"
    groups = reader["groups"]
    rows = []
    for family in families(accuracy):
        if family in groups:
            rows.append([f"**{family}**", groups[family]["n"], pct(groups[family]["read"])])
            types = [[g, v["n"], pct(v["read"])] for g, v in groups.items() if g.startswith(family + "/")]
            rows += types if len(types) <= MAX_TYPES_SHOWN else []
    table = md_table(["family / type", "n", "read correctly"], rows, [False, True, True])
    targets = md_table(
        ["target", "metric", "n", "measured", "target"],
        [[t["name"], METRIC_NAMES[t["metric"]], t["n"], pct(t["value"]), f">= {100 * t['target']:.0f}%"]
         for t in reader["targets"]],
        [False, False, True, True, True],
    )  # fmt: skip
    return f"{table}\n\n{targets}\n\nReal captchas of `../shared/realdev`, {READ_RULE}; {stamp(accuracy)}."


def render_card_model(results: dict, name: str) -> str:
    info = (results.get("accuracy") or {}).get("models", {}).get(name)
    if not info:
        return f"_No file figures for `{name}` yet: run `make eval`._"
    h, w, c = info["input"].split("x")
    files = f"`model.onnx` {info['onnx_mb']} MB" + (
        f", `best.pt` {info['best_pt_mb']} MB" if info["best_pt_mb"] else ""
    )
    parameters = f"{info['parameters'] / 1e6:.2f}M" if info["parameters"] else "not recorded"
    rows = [
        ["architecture", f"`{info['arch']}`"],
        ["input", f"{h}x{w} pixels (height x width), {'grayscale' if c == '1' else 'RGB'}"],
        ["parameters", parameters],
        ["charset", f"{info['charset_size']} characters + CTC blank"],
        ["files", files],
    ]
    return md_table(["property", "value"], rows)


def render_speed(results: dict, chinese: bool = False) -> str:
    speed = results.get("speed")
    if not speed:
        return "_尚未测速：运行 `make bench`。_" if chinese else "_No speed figures yet: run `make bench`._"
    name = speed["default_model"]
    model = speed["models"][name]
    ms, dd, up = model["bytes_p50_ms"], speed["ddddocr_bytes_p50_ms"], model["speedup_vs_ddddocr"]
    service = speed.get("service")
    m = speed["machine"]
    if chinese:
        line = f"默认模型 `{name}` 从图片字节到文字每张 {ms:.1f} ms（p50，{speed['threads']} 线程）"
        line += f"，ddddocr {dd:.1f} ms（快 {up:.1f} 倍）" if dd and up else ""
        if service:
            line += f"；服务在并发 {service['concurrency']} 时 {service['rps']:.0f} 请求/秒"
        return line + f"。{m['cpu']}（{m['cores']} 逻辑核），`{speed['command']}`，{m['date']}。"
    line = (
        f"Default model `{name}`: {ms:.1f} ms per captcha from image bytes to text (p50, {speed['threads']} thread(s))"
    )
    line += f", ddddocr {dd:.1f} ms ({up:.1f}x faster)" if dd and up else ""
    if service:
        line += f"; the service answers {service['rps']:.0f} requests/s at concurrency {service['concurrency']}"
    return line + f". {stamp(speed)}."


def render_ddddocr(results: dict, chinese: bool = False) -> str:
    """One line for ddddocr users: the default beside ddddocr on the same real captchas, where ddddocr reads more,
    and the speed from bytes to text; every figure from the results file."""
    accuracy, speed = results.get("accuracy"), results.get("speed")
    if not accuracy or "ddddocr" not in accuracy["readers"]:
        return "_尚无对比：运行 `make eval`。_" if chinese else "_No comparison yet: run `make eval`._"
    ours, theirs = accuracy["readers"][accuracy["default_model"]]["groups"], accuracy["readers"]["ddddocr"]["groups"]
    whole = ours["realdev"]
    behind = [f for f in families(accuracy) if f in theirs and theirs[f]["read"] > ours[f]["read"]]
    lag = ", ".join(f"{f} {pct(ours[f]['read'])} / {pct(theirs[f]['read'])}" for f in behind)
    model = speed and speed["models"].get(speed["default_model"])
    fast = model and model.get("bytes_p50_ms") and speed.get("ddddocr_bytes_p50_ms")
    if chinese:
        line = (f"同一批 {whole['n']} 张真实验证码：默认模型读对 {pct(whole['read'])}，ddddocr "
                f"{pct(theirs['realdev']['read'])}")  # fmt: skip
        line += f"（ddddocr 领先的：{lag}）" if lag else ""
        if fast:
            line += f"；每张 {model['bytes_p50_ms']:.1f} ms 对 {speed['ddddocr_bytes_p50_ms']:.1f} ms"
        return line + f"。`{accuracy['command']}` / `make bench`，{accuracy['machine']['date']}。"
    line = (f"On the same {whole['n']} real captchas the default model reads {pct(whole['read'])}, ddddocr "
            f"{pct(theirs['realdev']['read'])}")  # fmt: skip
    line += f" (ddddocr ahead: {lag}, ours / theirs)" if lag else ""
    if fast:
        line += f"; {model['bytes_p50_ms']:.1f} ms per captcha against {speed['ddddocr_bytes_p50_ms']:.1f} ms"
    return line + f". {stamp(accuracy)}; `make bench`."


def render_card_speed(results: dict, name: str) -> str:
    speed = results.get("speed")
    model = speed and speed["models"].get(name)
    if not model:
        return f"_No speed figures for `{name}` yet: run `make bench`._"
    rows = [
        ["network alone, one image (p50)", f"{model['network_p50_ms']:.2f} ms"],
        ["network alone, batch 64", f"{model['batch_img_s']:.0f} images/s"],
    ]
    if model["bytes_p50_ms"] is not None:
        rows.append(["image bytes to text, one image (p50)", f"{model['bytes_p50_ms']:.2f} ms"])
    if model["speedup_vs_ddddocr"]:
        rows.append(["against ddddocr on the same images", f"{model['speedup_vs_ddddocr']:.2f}x faster"])
    table = md_table(["measure", model["backend"]], rows, [False, True])
    return f"{table}\n\nInput {model['input']} (HxWxC), {speed['threads']} thread(s); {stamp(speed)}."


def render_architectures(results: dict) -> str:
    """The three architectures side by side (fp32 models; the shipped int8 default beside its source): size,
    input, network and bytes-to-text latency, batch throughput, and accuracy per realdev family."""
    accuracy, speed = results.get("accuracy"), results.get("speed")
    if not accuracy or not speed:
        return "_No figures yet: run `make eval` and `make bench`._"
    names = [n for n in reader_order(accuracy) if n != "ddddocr" and n in accuracy["models"]]
    fams = families(accuracy)
    headers = ["", *names]
    info = {n: accuracy["models"][n] for n in names}
    timing = {n: speed["models"].get(n, {}) for n in names}

    def row(label: str, cell) -> list:
        return [label, *(cell(n) for n in names)]

    def ms(value: float | None) -> str:
        return f"{value:.2f} ms" if value else "-"

    rows = [
        row("architecture", lambda n: info[n]["arch"]),
        row("parameters", lambda n: f"{info[n]['parameters'] / 1e6:.2f} M" if info[n]["parameters"] else "-"),
        row("ONNX file", lambda n: f"{info[n]['onnx_mb']:.1f} MB"),
        row("input (HxWxC)", lambda n: info[n]["input"]),
        row("network, one image (p50)", lambda n: ms(timing[n].get("network_p50_ms"))),
        row("bytes to text, one image (p50)", lambda n: ms(timing[n].get("bytes_p50_ms"))),
        row("network, batch 64", lambda n: f"{timing[n]['batch_img_s']:.0f} img/s" if timing[n] else "-"),
        *(
            row(
                f"real {f} ({accuracy['readers'][names[0]]['groups'][f]['n']})",
                lambda n, f=f: pct(accuracy["readers"][n]["groups"].get(f, {}).get("read")),
            )
            for f in fams
        ),  # fmt: skip
        row("real, all", lambda n: pct(accuracy["readers"][n]["groups"]["realdev"]["read"])),
    ]
    note = (f"Accuracy: {READ_RULE}; {stamp(accuracy)}. Speed: {speed['threads']} thread(s), onnxruntime; "
            f"{stamp(speed)}.")  # fmt: skip
    return md_table(headers, rows, [False] + [True] * len(names)) + "\n\n" + note


def marker(name: str, end: bool = False) -> str:
    return f"<!-- results:{name} {'end' if end else 'begin'} -->"


def blocks_for(results: dict, model: str | None = None) -> dict[str, str]:
    """The blocks a document must hold: README.md's (``model`` None), docs/architectures.md's
    (:data:`ARCHITECTURES_KEY`), or the card of ``model``."""
    if model == ARCHITECTURES_KEY:
        return {"architectures": render_architectures(results)}
    if model is None:
        return {
            "accuracy": render_accuracy(results),
            "zero-shot": render_zero_shot(results),
            "speed": render_speed(results),
            "speed-zh": render_speed(results, chinese=True),
            "ddddocr": render_ddddocr(results),
            "ddddocr-zh": render_ddddocr(results, chinese=True),
        }
    return {
        "model": render_card_model(results, model),
        "accuracy": render_card_accuracy(results, model),
        "speed": render_card_speed(results, model),
    }


def replace_blocks(text: str, blocks: dict[str, str]) -> str:
    """Every ``name`` block of ``text`` (it may occur more than once) replaced by ``blocks[name]``; a block
    missing from ``text`` raises ValueError."""
    for name, body in blocks.items():
        pattern = re.compile(re.escape(marker(name)) + r"\n.*?" + re.escape(marker(name, end=True)), re.DOTALL)
        if not pattern.search(text):
            raise ValueError(f"no {marker(name)} ... {marker(name, end=True)} block")
        block = f"{marker(name)}\n{body.strip()}\n{marker(name, end=True)}"
        text = pattern.sub(lambda _, block=block: block, text)
    return text


def documents(checkpoints: Path | None = None) -> list[tuple[Path, str | None]]:
    """``(path, model)``: README.md (model None) and the card of every shipped model (``<name>/model.onnx``)."""
    root = checkpoints or checkpoints_dir()
    found = sorted(d for d in root.iterdir() if (d / "model.onnx").is_file()) if root.is_dir() else []
    return [(README, None), (ARCHITECTURES, ARCHITECTURES_KEY), *((d / "README.md", d.name) for d in found)]


def render_documents(
    results: dict, targets: Sequence[tuple[Path, str | None]], preview: Path | None = None
) -> list[Path]:
    """Rewrite the blocks of ``targets`` (into copies under ``preview`` when given); return the files written."""
    written = []
    for document, model in targets:
        before = document.read_text(encoding="utf-8")
        text = replace_blocks(before, blocks_for(results, model))
        out = preview / relative(document).replace(os.sep, "_") if preview else document
        if preview or text != before:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(text, encoding="utf-8")
            written.append(out)
    return written


def disagreements(results: dict, targets: Sequence[tuple[Path, str | None]]) -> list[str]:
    """One line per document whose blocks are missing or differ from what the results file renders."""
    problems = []
    for document, model in targets:
        if not document.is_file():
            problems.append(f"{relative(document)}: missing")
            continue
        text = document.read_text(encoding="utf-8")
        try:
            if replace_blocks(text, blocks_for(results, model)) != text:
                problems.append(f"{relative(document)}: figures differ from the results file (run bench/results.py)")
        except ValueError as e:
            problems.append(f"{relative(document)}: {e}")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=RESULTS, help="the results file (default docs/results.json)")
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 on a disagreement")
    parser.add_argument("--preview", type=Path, help="write the rendered documents here instead of in place")
    args = parser.parse_args()
    results = load(args.results)
    if args.check:
        problems = disagreements(results, documents())
        print("\n".join(problems) or "every document agrees with " + relative(args.results))
        return 1 if problems else 0
    for path in render_documents(results, documents(), args.preview):
        print(f"rewrote {relative(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
