"""`make bench`: run every benchmark stage and write the figures, each with its command, into one document.

    python bench/run_all.py                        # full run (under 15 minutes on 2 cores) -> docs/benchmarks.md
    python bench/run_all.py --quick --out reports/bench/benchmarks.md           # smoke run (under 2 minutes)
    python bench/run_all.py --stages inference,flops --out /tmp/b.md

Stages, each a subprocess of a script in bench/ writing JSON (and markdown) that this script turns into tables:
inference (torch / onnxruntime fp32 / int8 and ddddocr), flops (the limit), service (loopback load test),
training (images/s with data loading, width and batch sweeps), generators (Java runners), merge
(tools/merge_datasets.py). A stage that fails is reported in the document with the tail of its output, the
others still run, and the script exits non-zero at the end. A stage that cannot run here (no JDK for the
generators) is reported as skipped.

The headline figures (latency per shipped model and against ddddocr, service requests/s) also go into the
``speed`` section of the results file (docs/results.json; reports/bench/results.json with --quick), and the blocks
of README.md and the model cards are rewritten from it (bench/results.py); a QUICK run writes rendered copies
into ``preview/`` beside its results file instead, so a smoke run never touches the committed figures.

The generated part sits between ``<!-- make bench: begin -->`` and ``<!-- make bench: end -->``; everything outside
the markers (hand-written sections) is kept. Without markers the block goes after the file's introduction, before
its first ``## `` section.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from bench import results as results_file
from bench.common import fmt_summary, summary
from bench.results import cpu_model, git_commit, gpu, package_versions, ram_gb, relative
from models.paths import REALDEV, ROOT, TEST_SPLIT
from models.report import md_table

BEGIN = "<!-- make bench: begin -->"
END = "<!-- make bench: end -->"
STAGES = ("inference", "flops", "service", "training", "generators", "merge")
TARGET_SPEEDUP = 2.0  # default model at least 2x faster than ddddocr per image (CPU)
TARGET_RPS = 300.0  # /predict requests/s at concurrency 8

# Counts per stage. Full: sized so the whole run stays under 15 minutes on a 2-core machine.
FULL = {
    "service": ["--workers", "1,2", "--concurrency", "1,8,32", "--requests", "600", "--seconds", "12"],
    "training": ["--repeats", "3", "--images", "256", "--widths", "96,128,160,192", "--batches", "16,32,64,128"],
    "generators": ["--count", "1500", "--repeats", "3", "--threads", "1,2"],
    "merge": ["--sizes", "10000", "100000", "--repeats", "3"],
}
QUICK = {
    "service": ["--workers", "1,2", "--concurrency", "1,8,32", "--requests", "40", "--seconds", "2"],
    "training": ["--quick", "--repeats", "1", "--images", "32", "--widths", "128,160", "--batches", "16,32"],
    "generators": ["--count", "200", "--repeats", "1", "--threads", "1,2"],
    "merge": ["--sizes", "1000", "--repeats", "1"],
}
TIMEOUTS = {"inference": 420, "flops": 180, "service": 300, "training": 420, "generators": 300, "merge": 480}
QUICK_TIMEOUT = 150


@dataclass
class Stage:
    name: str
    title: str
    command: list[str]  # as run (python = this interpreter)
    shown: list[str]  # as printed in the document: relative paths, without the --json/--markdown plumbing
    json_path: Path
    markdown_path: Path | None = None
    status: str = "not run"  # ok, failed, skipped
    seconds: float = 0.0
    note: str = ""
    output_tail: str = ""
    data: dict = field(default_factory=dict)


# ---- the document


def write_document(path: Path, block: str) -> None:
    """Put ``block`` between the markers of ``path``, keeping everything outside them; without markers, insert
    it after the introduction (before the first ``## `` heading), or append it; create the file if needed."""
    generated = f"{BEGIN}\n{block.strip()}\n{END}\n"
    text = path.read_text(encoding="utf-8") if path.is_file() else "# Benchmarks\n"
    if BEGIN in text and END in text and text.index(BEGIN) < text.index(END):
        before, rest = text.split(BEGIN, 1)
        after = rest.split(END, 1)[1].lstrip("\n")
        text = before + generated + ("\n" + after if after else "")
    else:
        lines = text.splitlines(keepends=True)
        first_section = next((i for i, line in enumerate(lines) if line.startswith("## ")), len(lines))
        head, tail = "".join(lines[:first_section]).rstrip("\n"), "".join(lines[first_section:])
        text = head + "\n\n" + generated + ("\n" + tail if tail else "")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


# ---- the stages


def service_image(json_dir: Path) -> Path:
    """A real captcha for the load test, else a test-split PNG, else one drawn with Pillow."""
    candidates = [REALDEV / "ruoyi" / "00000005.png", *sorted((TEST_SPLIT / "images").glob("*.png"))[:1]]
    for path in candidates:
        if path.is_file():
            return path
    from PIL import Image, ImageDraw

    path = json_dir / "service_image.png"
    image = Image.new("RGB", (160, 60), "white")
    ImageDraw.Draw(image).text((10, 10), "Ab3x9", fill=(20, 90, 200), font_size=36)
    image.save(path)
    return path


def font_dir() -> str | None:
    try:
        import easy_captcha
    except ImportError:
        return None
    return str(Path(easy_captcha.__file__).parent / "fonts")


def plan(stages: list[str], quick: bool, json_dir: Path) -> list[Stage]:
    counts = QUICK if quick else FULL
    out = []
    for name in stages:
        json_path, md_path = json_dir / f"{name}.json", json_dir / f"{name}.md"
        extra: list[str] = []
        if name == "inference":
            script, title, args = "bench_inference.py", "Inference", ["--quick"] if quick else []
            extra = ["--markdown", str(md_path)]
        elif name == "flops":
            script, title = "flops.py", "The limit: FLOPs and the share of the CPU's peak"
            args = ["--quick"] if quick else []
            extra = ["--inference-json", str(json_dir / "inference.json"), "--markdown", str(md_path)]
        elif name == "service":
            script, title = "bench_service.py", "Service (`server_fastapi.py` on loopback)"
            args = [*counts["service"], "--image", relative(service_image(json_dir))]
        elif name == "training":
            script, title = "train_speed.py", "Training throughput (data loading included)"
            args = ["--modes", "loader,sweep", *counts["training"]]
            extra = ["--markdown", str(md_path)]
        elif name == "generators":
            script, title = "bench_generators.py", "Data generation (`tools/java_captcha`)"
            fonts = font_dir()
            args = [*counts["generators"], *(["--font-dir", fonts] if fonts else [])]
        elif name == "merge":
            script, title, args = "bench_merge.py", "Merge (`tools/merge_datasets.py`)", list(counts["merge"])
        else:
            raise SystemExit(f"unknown stage {name!r}; known: {', '.join(STAGES)}")
        command = [sys.executable, str(ROOT / "bench" / script), *args, "--json", str(json_path), *extra]
        shown = ["python", f"bench/{script}", *args]
        if name == "flops":
            shown += ["--inference-json", "inference.json"]
        if name == "generators" and "--font-dir" in args:
            at = shown.index("--font-dir")
            shown[at + 1] = "<easy_captcha fonts>"
        out.append(Stage(name, title, command, shown, json_path, md_path if extra else None))
    return out


def run_stage(stage: Stage, timeout: int) -> None:
    if stage.name == "generators" and not (ROOT / "build" / "java" / "EasyCaptchaRunner.class").is_file():
        stage.status, stage.note = "skipped", "the Java runners are not compiled (no JDK, or `make java` not run)"
        return
    if stage.name == "generators" and not shutil.which("java"):
        stage.status, stage.note = "skipped", "no `java` on PATH"
        return
    started = time.perf_counter()
    # A session of its own, so that a timeout or Ctrl-C also ends what the stage started (the uvicorn server).
    proc = subprocess.Popen(stage.command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # fmt: skip
    try:
        output, _ = proc.communicate(timeout=timeout)
        code = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output = proc.communicate()[0] + f"\n(timed out after {timeout} s)"
        code = -1
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    stage.seconds = time.perf_counter() - started
    stage.output_tail = "\n".join(output.strip().splitlines()[-25:])
    if code != 0 or not stage.json_path.is_file():
        stage.status = "failed"
        stage.note = f"exit code {code}" if code else "no results written"
        return
    stage.status = "ok"
    stage.data = json.loads(stage.json_path.read_text(encoding="utf-8"))


# ---- rendering


def render_service(data: dict) -> str:
    rows = [
        [
            r["workers"],
            r["concurrency"],
            r["n"],
            f"{r['rps']:.1f}",
            f"{r['p50']:.1f}",
            f"{r['p99']:.1f}",
            r["errors"],
            f"{r['load']:.1f}",
        ]
        for r in data["levels"]
    ]
    headers = ["workers", "concurrency", "requests", "req/s", "p50 ms", "p99 ms", "errors", "load avg (1 min)"]
    text = [
        f"One {data['image_bytes']:,}-byte captcha (`{data['image']}`) per `POST /predict`; each level stops "
        f"after {data['requests']} requests or {data['seconds']:g} s; onnxruntime {data['threads']} thread(s) "
        "per model; the load generator (httpx, asyncio) shares the machine.",
        "",
        md_table(headers, rows, [True] * 8),
        "",
    ]
    for m in data["memory"]:
        text.append(
            f"- Server memory (RSS of the process tree), {m['workers']} worker(s): {m['before_mb']:.0f} MB "
            f"before the levels, {m['after_mb']:.0f} MB after."
        )
    return "\n".join(text) + "\n"


def render_generators(data: dict) -> str:
    rows = [
        [
            r["case"],
            r["threads"],
            r["count"],
            fmt_summary(summary(r["end_to_end"]), 0),
            fmt_summary(summary(r["in_run"]), 0),
            fmt_summary(summary(r["cpu_ms"]), 2),
        ]
        for r in data["rows"]
    ]
    headers = ["family", "threads", "images per run", "end-to-end img/s", "in-run img/s", "CPU ms per image"]
    intro = (
        f"Median (min-max) of {data['repeats']} runs. End to end includes the JVM start; in-run is the runner's "
        "own rate; CPU time (user + system) per image does not depend on other load."
    )
    return intro + "\n\n" + md_table(headers, rows, [False] + [True] * 5) + "\n"


def render_merge(data: dict) -> str:
    rows, previous = [], None
    for r in data["rows"]:
        s = summary(r["seconds"])
        growth = "-"
        if previous:
            growth = f"x{s['median'] / previous[1]:.1f} time for x{r['images'] / previous[0]:.0f} images"
        rows.append(
            [
                f"{r['images']:,}",
                fmt_summary(s, 2, " s"),
                f"{r['images'] / s['median']:,.0f}",
                fmt_summary(summary(r["cpu_seconds"]), 1, " s"),
                growth,
            ]
        )
        previous = (r["images"], s["median"])
    headers = ["images", "wall time", "images/s", "CPU (user+sys)", "growth"]
    intro = (
        f"Copy-mode merge with `--dedupe` of synthetic 160x60 PNG captchas (1% duplicates, 0.5% test leaks), "
        f"in a subprocess; median (min-max) of {data['repeats']} runs."
    )
    return intro + "\n\n" + md_table(headers, rows, [True, True, True, True, False]) + "\n"


def headline(stages: dict[str, Stage], quick: bool) -> str:
    rows = []
    inference = stages.get("inference")
    if inference and inference.status == "ok":
        d = inference.data
        default = d["default_model"]
        dd = d["ddddocr"]
        speed = next((r for r in dd.get("speed", {}).get("readers", []) if r["reader"] == f"ours: {default}"), None)
        if speed and speed.get("ratio_vs_ddddocr"):
            ratio = speed["ratio_vs_ddddocr"]
            speedup = 1 / ratio["median"]
            met = "met" if speedup >= TARGET_SPEEDUP else "missed"
            rows.append(
                [
                    f"`{default}` per-image latency / ddddocr (bytes to text, same images, interleaved)",
                    f"{fmt_summary(ratio, 2)}: {speedup:.2f}x faster",
                    f">= {TARGET_SPEEDUP:.0f}x faster",
                    f"{met} ({speedup:.2f}x vs {TARGET_SPEEDUP:.0f}x)",
                ]
            )
        elif not dd["available"]:
            rows.append(["per-image speed vs ddddocr", "ddddocr not installed", f">= {TARGET_SPEEDUP:.0f}x", "unknown"])
        acc = dd.get("accuracy", {}).get("readers", {})
        ours, theirs = acc.get(f"ours: {default}"), acc.get("ddddocr")
        if ours:
            ours_all = ours["all"]
            cell = f"ours {100 * ours_all['em_nocase']:.1f}% ({100 * ours_all['em']:.1f}% case-sensitive)"
            status = "unknown"
            if theirs:
                gap = 100 * (ours_all["em_nocase"] - theirs["all"]["em_nocase"])
                cell += (
                    f", ddddocr {100 * theirs['all']['em_nocase']:.1f}% "
                    f"({100 * theirs['all']['em']:.1f}% case-sensitive)"
                )
                status = f"{'met' if gap > 0 else 'missed'} ({gap:+.1f} points)"
            rows.append(
                [f"exact match ignoring case on realdev ({ours_all['n']} images)", cell, "better than ddddocr", status]
            )
    service = stages.get("service")
    if service and service.status == "ok":
        at8 = [r for r in service.data["levels"] if r["concurrency"] == 8]
        errors = sum(r["errors"] for r in service.data["levels"])
        if at8:
            best = max(at8, key=lambda r: r["rps"])
            cells = ", ".join(f"{r['rps']:.0f} req/s with {r['workers']} worker(s)" for r in at8)
            met = "met" if best["rps"] >= TARGET_RPS and errors == 0 else "missed"
            rows.append(
                [
                    "service `/predict`, concurrency 8",
                    cells,
                    f">= {TARGET_RPS:.0f} req/s, 0 errors",
                    f"{met} (best {best['rps']:.0f} vs {TARGET_RPS:.0f} req/s; {errors} errors in all levels)",
                ]
            )
    flops = stages.get("flops")
    if flops and flops.status == "ok":
        d = flops.data
        default = f"{d['default_model']}: "
        share = next((item for item in d["shares"].items() if item[0].startswith(default)), None)
        share = share or next(iter(d["shares"].items()), None)
        if share:
            label, s = share
            label += ", int8 operations counted as fp32 FLOPs" if "int8" in label else ""
            rows.append(
                [
                    f"share of the CPU's fp32 peak ({label})",
                    f"{100 * s['of_measured']:.0f}% of measured, "
                    f"{100 * s['of_theoretical']:.0f}% of theoretical ({d['flops']['per_image'] / 1e6:.0f} MFLOP "
                    "per image)",
                    "none",
                    "-",
                ]
            )
    text = (
        md_table(["figure", "this run", "target", "status"], rows) if rows else "No headline figures (stages failed)."
    )
    if quick:
        text = ("**QUICK smoke run: tiny counts, the figures only show that every stage works.**\n\n") + text
    return text


def render(stages: list[Stage], header: str, quick: bool) -> str:
    by_name = {s.name: s for s in stages}
    parts = [header, "### Summary", "", headline(by_name, quick), ""]
    for stage in stages:
        parts.append(f"### {stage.title}")
        parts.append("")
        parts.append(f"Command: `{shlex.join(stage.shown)}` ({stage.seconds:.0f} s).")
        parts.append("")
        if stage.status == "skipped":
            parts.append(f"**Skipped**: {stage.note}.")
        elif stage.status != "ok":
            parts += [
                f"**Stage failed** ({stage.note}). Last lines of its output:",
                "",
                "```",
                stage.output_tail or "(no output)",
                "```",
            ]
        elif stage.markdown_path and stage.markdown_path.is_file():
            parts.append(stage.markdown_path.read_text(encoding="utf-8").strip())
        elif stage.name == "service":
            parts.append(render_service(stage.data).strip())
        elif stage.name == "generators":
            parts.append(render_generators(stage.data).strip())
        elif stage.name == "merge":
            parts.append(render_merge(stage.data).strip())
        parts.append("")
    return "\n".join(parts)


def record_speed(stages: list[Stage], quick: bool, path: Path | None) -> None:
    """Put the inference (and service) figures into the results file and re-render the documents from it; a
    QUICK run uses the scratch results file and renders copies into ``preview/`` beside it."""
    by_name = {s.name: s for s in stages if s.status == "ok"}
    if "inference" not in by_name:
        print("no inference figures: the results file is left as it was", file=sys.stderr)
        return
    path = path or (ROOT / "reports" / "bench" / "results.json" if quick else results_file.RESULTS)
    service = by_name["service"].data if "service" in by_name else None
    section = results_file.speed_section(by_name["inference"].data, service, quick)
    recorded = results_file.update(path, "speed", section)
    preview = path.parent / "preview" if quick else None
    for written in results_file.render_documents(recorded, results_file.documents(), preview):
        print(f"rewrote {relative(written)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny counts, under 2 minutes")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="the document (default docs/benchmarks.md, reports/bench/benchmarks.md with --quick)",
    )
    parser.add_argument("--stages", default=",".join(STAGES), help="which of " + ",".join(STAGES))
    parser.add_argument("--json-dir", type=Path, default=None, help="per-stage results (default reports/bench/...)")
    parser.add_argument(
        "--results",
        type=Path,
        default=None,
        help="results file for the speed section (default docs/results.json, reports/bench/results.json with --quick)",
    )
    args = parser.parse_args()
    out = args.out or ROOT / ("reports/bench/benchmarks.md" if args.quick else "docs/benchmarks.md")
    json_dir = args.json_dir or ROOT / "reports" / "bench" / ("quick" if args.quick else "full")
    json_dir.mkdir(parents=True, exist_ok=True)
    for stale in json_dir.glob("*.json"):
        stale.unlink()  # a failed stage must not be reported with the figures of an earlier run

    started, load_before = time.perf_counter(), os.getloadavg()
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    stages = plan(args.stages.split(","), args.quick, json_dir)
    for i, stage in enumerate(stages, 1):
        print(f"[{i}/{len(stages)}] {stage.name}: {shlex.join(stage.shown)}", flush=True)
        run_stage(stage, QUICK_TIMEOUT if args.quick else TIMEOUTS[stage.name])
        detail = f" ({stage.note})" if stage.note else ""
        print(f"[{i}/{len(stages)}] {stage.name}: {stage.status} in {stage.seconds:.0f} s{detail}", flush=True)
        if stage.status == "failed":
            print(stage.output_tail, file=sys.stderr)
    total, load_after = time.perf_counter() - started, os.getloadavg()

    invoked = "make bench" + (" QUICK=1" if args.quick else "") if os.environ.get("MAKELEVEL") else None
    argv = shlex.join(["python", "bench/run_all.py", *sys.argv[1:]])
    header = "\n".join(
        [
            f"## `make bench`{' QUICK=1' if args.quick else ''}: {date}",
            "",
            "_Written by `bench/run_all.py`; everything between the `make bench` markers is replaced by the next run._",
            "",
            f"- Machine: {cpu_model()}, {os.cpu_count()} logical CPUs, {ram_gb()} RAM, GPU: {gpu()}.",
            f"- Versions: {package_versions()}.",
            f"- Date: {date}; commit {git_commit()}.",
            f"- Load average (1/5/15 min): {'/'.join(f'{x:.1f}' for x in load_before)} before, "
            f"{'/'.join(f'{x:.1f}' for x in load_after)} after; total time {total:.0f} s.",
            f"- Command: `{invoked}` (runs `{argv}`)." if invoked else f"- Command: `{argv}`.",
            "",
        ]
    )
    write_document(out, render(stages, header, args.quick))
    record_speed(stages, args.quick, args.results)
    failed = [s.name for s in stages if s.status == "failed"]
    print(f"wrote {relative(out)} in {total:.0f} s" + (f"; failed stages: {', '.join(failed)}" if failed else ""))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
