"""Inference per model: torch eager, onnxruntime fp32 and int8, and ddddocr on the same images, in one run.

    python bench/bench_inference.py                       # every model folder in checkpoints/
    python bench/bench_inference.py --quick --json /tmp/inference.json --markdown /tmp/inference.md
    python bench/bench_inference.py --rounds 7 --calls 30 --test-n 1000 --threads 2

For every folder of ``checkpoints/`` (``model.onnx`` with metadata, and ``best.pt`` unless the folder ships an
int8 ONNX only), at the model's own input size:

* network latency of one image (p50, p90 over all calls) and batch-64 throughput for torch eager (when ``best.pt``
  exists), onnxruntime as shipped, and onnxruntime int8 made in this run by dynamic quantization (all supported
  operators, and LSTM + MatMul only). Backends run interleaved in rounds; each round's median is divided by the
  onnxruntime one of the same round, and the median and min-max of those ratios are reported.
* exact match of each backend on a test sample (``dataset/test``, else ``../shared/realdev``): the int8 change.
* full path from image bytes (decode, preprocess, network, CTC decode: ``Engine.predict``) against ddddocr's
  ``classification(bytes)`` on the same real PNG captchas, interleaved in rounds: per-round ratio ours / ddddocr.
* accuracy of ours and ddddocr on ``../shared/realdev`` (GIFs: ddddocr gets our min-fused frame as PNG bytes,
  since it would read only the first frame; its text is put in the project's label convention).
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import (
    REALDEV,
    LabelledImage,
    fmt_summary,
    fused_png,
    is_quantized,
    open_ddddocr,
    percentile,
    publish,
    quantize_dynamic_int8,
    realdev_images,
    spaced,
    summary,
    test_images,
    time_calls,
)
from bench.results import pct
from models.charset import normalize_label
from models.engine import Engine, OnnxEngine, TorchEngine, default_model_name, discover_models
from models.paths import checkpoints_dir
from models.preprocess import InputSpec, preprocess
from models.report import md_table

BATCH = 64
PARTIAL_INT8 = ("LSTM", "MatMul")  # ConvInteger is slow in onnxruntime's CPU provider; this variant leaves convs fp32

QUICK = {"rounds": 2, "calls": 8, "batch_calls": 1, "test_n": 64, "realdev_n": 60, "ddddocr_images": 8}
FULL = {"rounds": 7, "calls": 30, "batch_calls": 1, "test_n": 1000, "realdev_n": 0, "ddddocr_images": 24}


def em(predictions: list[str], labels: list[str]) -> dict[str, float]:
    """Exact match, case-sensitive and ignoring case, over ``n`` images."""
    n = len(labels)
    same = sum(p == t for p, t in zip(predictions, labels, strict=True))
    same_nocase = sum(p.casefold() == t.casefold() for p, t in zip(predictions, labels, strict=True))
    return {"em": same / max(n, 1), "em_nocase": same_nocase / max(n, 1), "n": n}


def backends_for(folder: Path, tmp: Path, threads: int) -> list[tuple[str, str, Engine]]:
    """(label, kind, engine) for one model folder; the shipped onnxruntime model comes first (the reference)."""
    onnx_path = folder / "model.onnx"
    shipped_int8 = is_quantized(onnx_path)
    out = [
        ("onnxruntime int8 (shipped)" if shipped_int8 else "onnxruntime fp32", "ort", OnnxEngine(onnx_path, threads))
    ]
    if (folder / "best.pt").is_file():
        out.append(("torch eager fp32", "torch", TorchEngine(folder / "best.pt")))
    if not shipped_int8:
        for label, kind, ops in (
            ("onnxruntime int8 dynamic", "int8", None),
            ("onnxruntime int8 dynamic, LSTM+MatMul only", "int8_partial", PARTIAL_INT8),
        ):
            path = quantize_dynamic_int8(onnx_path, tmp / f"{folder.name}_{kind}.onnx", ops)
            out.append((label, kind, OnnxEngine(path, threads)))
    return out


def arrays_of(images: list[LabelledImage], spec: InputSpec) -> np.ndarray:
    return np.stack([preprocess(image.path, spec) for image in images])


def predict_texts(engine: Engine, arrays: np.ndarray) -> list[str]:
    return [
        p.text for start in range(0, len(arrays), BATCH) for p in engine.predict_arrays(arrays[start : start + BATCH])
    ]


def time_backends(backends: list[tuple[str, str, Engine]], singles: np.ndarray, batch: np.ndarray, cfg: dict) -> list:
    """Interleaved rounds: in each round every backend makes ``calls`` single-image calls (cycling over
    ``singles``) then ``batch_calls`` batch-64 calls. Ratios are taken against the first backend, round by round."""
    engines = [engine for _, _, engine in backends]
    for engine in engines:  # warm-up: first-call allocations, thread pools
        engine.logits(singles[:1])
        engine.logits(batch)
    calls = {i: [] for i in range(len(engines))}
    round_p50 = {i: [] for i in range(len(engines))}
    batch_rate = {i: [] for i in range(len(engines))}
    for r in range(cfg["rounds"]):
        order = range(len(engines)) if r % 2 == 0 else reversed(range(len(engines)))  # no fixed position
        for i in order:
            engine, inputs = engines[i], itertools.cycle(singles)
            times = time_calls(lambda engine=engine, inputs=inputs: engine.logits(next(inputs)[None]), cfg["calls"])
            calls[i] += times
            round_p50[i].append(statistics.median(times))
            started = time.perf_counter()
            for _ in range(cfg["batch_calls"]):
                engine.logits(batch)
            batch_rate[i].append(cfg["batch_calls"] * len(batch) / (time.perf_counter() - started))
    results = []
    for i, (label, kind, _) in enumerate(backends):
        ratios = [a / b for a, b in zip(round_p50[i], round_p50[0], strict=True)]
        results.append(
            {
                "backend": label,
                "kind": kind,
                "p50_ms": statistics.median(calls[i]),
                "p90_ms": percentile(calls[i], 90),
                "round_p50_ms": summary(round_p50[i]),
                "batch_img_s": summary(batch_rate[i]),
                "ratio_vs_ort": summary(ratios),
            }
        )
    return results


def load_ddddocr():
    """(reader, version, error); the reader is None when ddddocr cannot be imported or started."""
    try:
        reader = open_ddddocr()
    except Exception as e:  # ImportError, or a broken install of its onnxruntime / opencv dependencies
        return None, "", f"{type(e).__name__}: {e}"
    from importlib.metadata import version

    return reader, version("ddddocr"), ""


def versus_ddddocr(ours: dict[str, Engine], reader, images: list[LabelledImage], cfg: dict) -> dict:
    """Full path from bytes, ours and ddddocr interleaved in rounds on the same images."""
    data = [image.path.read_bytes() for image in images]
    readers = {f"ours: {name}": (lambda b, e=engine: e.predict([b])[0].text) for name, engine in ours.items()}
    if reader is not None:
        readers["ddddocr"] = reader.classification
    names = list(readers)
    for name in names:  # warm-up
        for b in data[:3]:
            readers[name](b)
    calls = {name: [] for name in names}
    rounds = {name: [] for name in names}
    for r in range(cfg["rounds"]):
        for name in names if r % 2 == 0 else names[::-1]:
            inputs = itertools.cycle(data)
            times = time_calls(lambda name=name, inputs=inputs: readers[name](next(inputs)), cfg["calls"])
            calls[name] += times
            rounds[name].append(statistics.median(times))
    out = {"images": len(images), "calls_per_round": cfg["calls"], "rounds": cfg["rounds"], "readers": []}
    for name in names:
        row = {
            "reader": name,
            "p50_ms": statistics.median(calls[name]),
            "p90_ms": percentile(calls[name], 90),
            "round_p50_ms": summary(rounds[name]),
        }
        if reader is not None and name != "ddddocr":
            row["ratio_vs_ddddocr"] = summary(a / b for a, b in zip(rounds[name], rounds["ddddocr"], strict=True))
        out["readers"].append(row)
    return out


def realdev_accuracy(ours: dict[str, Engine], reader, images: list[LabelledImage]) -> dict:
    """Exact match per realdev family for ours (as shipped, onnxruntime) and ddddocr."""
    families = sorted({image.group for image in images})
    by_reader: dict[str, list[str]] = {}
    for name, engine in ours.items():
        by_reader[f"ours: {name}"] = predict_texts(engine, arrays_of(images, engine.spec))
    if reader is not None:
        preds = []
        for image in images:
            data = fused_png(image.path) if image.path.suffix.lower() == ".gif" else image.path.read_bytes()
            preds.append(normalize_label(reader.classification(data)))
        by_reader["ddddocr"] = preds
    table = {}
    for name, preds in by_reader.items():
        labels = [image.label for image in images]
        row = {"all": em(preds, labels)}
        for family in families:
            keep = [i for i, image in enumerate(images) if image.group == family]
            row[family] = em([preds[i] for i in keep], [labels[i] for i in keep])
        table[name] = row
    return {"families": families, "n": len(images), "readers": table}


def compare_ddddocr(shipped: dict[str, Engine], sample: list[LabelledImage], sample_desc: str, cfg: dict) -> dict:
    """Speed of ours (as shipped) against ddddocr on real PNG captchas (else the test sample), and accuracy per
    realdev family."""
    reader, version, error = load_ddddocr()
    out: dict = {"available": reader is not None, "version": version, "error": error}
    started = time.perf_counter()
    real = realdev_images(limit=cfg["realdev_n"])
    pngs = [image for image in real if image.path.suffix.lower() == ".png" and image.group != "easy_gif"]
    speed_images = spaced(
        pngs or [image for image in sample if image.path.suffix.lower() == ".png"], cfg["ddddocr_images"]
    )
    out["speed"] = versus_ddddocr(shipped, reader, speed_images, cfg)
    out["speed"]["source"] = "real PNG captchas (easy, ctext, ruoyi)" if pngs else sample_desc
    if real:
        out["accuracy"] = realdev_accuracy(shipped, reader, real)
    else:
        out["accuracy_note"] = f"no real captchas under {REALDEV}: accuracy not compared"
    print(f"ddddocr comparison in {time.perf_counter() - started:.0f} s", flush=True)
    return out


def run(checkpoints: Path, cfg: dict, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    found = discover_models(checkpoints)
    if not found:
        raise SystemExit(f"no <name>/model.onnx under {checkpoints}")
    default = default_model_name(checkpoints)
    scratch = tempfile.TemporaryDirectory()
    sample, sample_desc = test_images(cfg["test_n"], Path(scratch.name))
    result: dict = {
        "settings": {**cfg, "threads": threads, "batch": BATCH},
        "default_model": default,
        "test_sample": sample_desc,
        "models": [],
    }
    shipped: dict[str, Engine] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, folder in found.items():
            started = time.perf_counter()
            backends = backends_for(folder, Path(tmp), threads)
            reference = backends[0][2]
            shipped[name] = reference
            spec = reference.spec
            arrays = arrays_of(sample, spec)
            batch = np.concatenate([arrays] * (BATCH // len(arrays) + 1))[:BATCH]
            timings = time_backends(backends, arrays[:16], batch, cfg)
            labels = [image.label for image in sample]
            reference_texts = predict_texts(reference, arrays)
            for row, (_, _, engine) in zip(timings, backends, strict=True):
                texts = reference_texts if engine is reference else predict_texts(engine, arrays)
                row["accuracy"] = em(texts, labels)
                row["agreement_vs_ort"] = sum(a == b for a, b in zip(texts, reference_texts, strict=True)) / len(texts)
            result["models"].append(
                {
                    "name": name,
                    "arch": reference.arch,
                    "input": f"{spec.img_h}x{spec.img_w}x{spec.channels}",
                    "shipped_int8": "int8" in backends[0][0],
                    "has_best_pt": (folder / "best.pt").is_file(),
                    "backends": timings,
                }
            )
            print(f"{name}: {len(backends)} backends in {time.perf_counter() - started:.0f} s", flush=True)

        result["ddddocr"] = compare_ddddocr(shipped, sample, sample_desc, cfg)
    scratch.cleanup()
    return result


def render_backends(result: dict) -> list[str]:
    """Latency, throughput and accuracy per model and backend."""
    s = result["settings"]
    out = [
        f"Networks alone, one image per call (p50, p90 over all calls) and batch {s['batch']} (images/s, median "
        f"(min-max) of {s['rounds']} rounds); onnxruntime and torch on {s['threads']} threads. Backends run "
        "interleaved, round by round; *vs ORT* is the median (min-max) of the per-round ratio of p50 latencies "
        "against the model's shipped onnxruntime file. Accuracy: exact match on " + result["test_sample"] + ".",
        "",
    ]
    rows = []
    for model in result["models"]:
        for b in model["backends"]:
            a = b["accuracy"]
            rows.append(
                [
                    model["name"],
                    model["input"],
                    b["backend"],
                    f"{b['p50_ms']:.2f}",
                    f"{b['p90_ms']:.2f}",
                    fmt_summary(b["batch_img_s"], 0),
                    fmt_summary(b["ratio_vs_ort"], 2),
                    pct(a["em"]),
                    pct(a["em_nocase"]),
                    pct(b["agreement_vs_ort"]),
                ]
            )
    headers = [
        "model",
        "input HxWxC",
        "backend",
        "p50 ms",
        "p90 ms",
        "batch-64 img/s",
        "vs ORT (latency ratio)",
        "EM",
        "EM (no case)",
        "same text as ORT",
    ]
    out.append(md_table(headers, rows, [False] * 3 + [True] * 7))
    return out


def render_ddddocr(d: dict) -> list[str]:
    """ddddocr's version, the full-path speed against it and the accuracy on real captchas."""
    out: list[str] = []
    if not d["available"]:
        out.append(f"ddddocr: **not available** ({d['error']}); install it with `pip install ddddocr==1.6.1`.")
    else:
        out.append(f"ddddocr {d['version']} (its own onnxruntime session, default threads).")
    speed = d.get("speed")
    if speed:
        out += [
            "",
            f"**Full path from image bytes** (decode + preprocess + network + decode), {speed['images']} "
            f"{speed['source']}, {speed['rounds']} rounds of {speed['calls_per_round']} calls per "
            "reader, interleaved; the ratio is taken round by round (median, min-max).",
            "",
        ]
        rows = [
            [
                r["reader"],
                f"{r['p50_ms']:.2f}",
                f"{r['p90_ms']:.2f}",
                fmt_summary(r["round_p50_ms"], 2),
                fmt_summary(r.get("ratio_vs_ddddocr"), 2) if d["available"] else "ddddocr not installed",
            ]
            for r in speed["readers"]
        ]
        headers = ["reader", "p50 ms", "p90 ms", "round p50 ms", "ours / ddddocr"]
        out.append(md_table(headers, rows, [False, True, True, True, True]))
    if d.get("accuracy_note"):
        out += ["", d["accuracy_note"] + "."]
    acc = d.get("accuracy")
    if acc:
        fams = acc["families"]
        out += [
            "",
            f"**Accuracy on real captchas** (`../shared/realdev`, {acc['n']} images), exact match, "
            "case-sensitive / ignoring case. GIFs: ddddocr is given our min-fused frame as PNG bytes (it would "
            "read only the first frame, which hides a character); its output is put in the project's label "
            "convention (full-width to ASCII, `×÷` to `*/`) before comparing.",
            "",
        ]
        rows = []
        for name, row in acc["readers"].items():
            rows.append(
                [name] + [f"{pct(row[k]['em'])} / {pct(row[k]['em_nocase'])} ({row[k]['n']})" for k in ["all", *fams]]
            )
        if not d["available"]:
            rows.append(["ddddocr"] + ["not installed"] * (len(fams) + 1))
        out.append(md_table(["reader", "all", *fams], rows, [False] + [True] * (len(fams) + 1)))
    return out


def render(result: dict) -> str:
    """The markdown tables of one run."""
    return "\n".join(render_backends(result) + [""] + render_ddddocr(result["ddddocr"])) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoints", type=Path, default=checkpoints_dir(), help="model folders")
    parser.add_argument("--quick", action="store_true", help="tiny counts (a smoke run)")
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op and torch threads")
    for key, value in FULL.items():
        parser.add_argument("--" + key.replace("_", "-"), type=int, default=None, help=f"default {value}")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--markdown", type=Path, default=None, help="write the tables here")
    args = parser.parse_args()
    cfg = dict(QUICK if args.quick else FULL)
    cfg.update({k: getattr(args, k) for k in FULL if getattr(args, k) is not None})
    result = run(args.checkpoints, cfg, args.threads)
    publish(result, render(result), args.json, args.markdown)


if __name__ == "__main__":
    main()
