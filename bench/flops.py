"""The limit: FLOPs per image of the default model, this CPU's fp32 peak, and the share of it inference reaches.

    python bench/flops.py [--inference-json inference.json] [--json flops.json] [--markdown flops.md] [--quick]

FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode`` on the default model's ``best.pt`` (when the
default folder ships an int8 ONNX only, the fp32 checkpoint of the same architecture, ``checkpoints/<arch>/``).
The counter skips recurrent layers (``aten.lstm`` is one opaque call), so LSTM/GRU FLOPs are added analytically:
per step and direction, gates x 2 x hidden x (input + hidden) multiply-adds. One multiply-add is 2 FLOPs.

Peak, two ways: measured (a large fp32 matrix product with torch on ``--threads`` threads, GFLOP/s, median of
several runs) and theoretical (cores x GHz from /proc/cpuinfo x fp32 FLOP per cycle, the assumption printed).
Share = (FLOPs per image / single-image p50 latency) / peak, for onnxruntime fp32 and int8 (dynamic quantization;
int8 operations counted as if they were fp32 FLOPs). Latencies come from ``--inference-json`` (the same run of
bench_inference.py) when given, else they are measured here.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from bench.common import (
    fmt_summary,
    is_quantized,
    publish,
    quantize_dynamic_int8,
    summary,
    time_calls,
)
from models.checkpoint import load_model
from models.engine import OnnxEngine, default_model_name, read_onnx_meta
from models.paths import ROOT, checkpoints_dir
from models.report import md_table


def checkpoint_of_default(checkpoints: Path) -> tuple[str, Path]:
    """(default model name, the fp32 checkpoint that stands for it)."""
    name = default_model_name(checkpoints)
    if name is None:
        raise SystemExit(f"no <name>/model.onnx under {checkpoints}")
    folder = checkpoints / name
    if (folder / "best.pt").is_file():
        return name, folder / "best.pt"
    arch = read_onnx_meta(folder / "model.onnx").arch  # an int8-only folder: its fp32 sibling has the weights
    if not (checkpoints / arch / "best.pt").is_file():
        raise SystemExit(f"{folder} has no best.pt and neither has {checkpoints / arch}")
    return name, checkpoints / arch / "best.pt"


def recurrent_flops(module: nn.Module, steps: int, batch: int) -> int:
    """Analytic FLOPs of an nn.LSTM / nn.GRU over ``steps`` time steps (matrix products only)."""
    gates = 4 if isinstance(module, nn.LSTM) else 3
    directions = 2 if module.bidirectional else 1
    total = 0
    for layer in range(module.num_layers):
        inputs = module.input_size if layer == 0 else module.hidden_size * directions
        total += 2 * gates * module.hidden_size * (inputs + module.hidden_size) * steps * directions * batch
    return total


def count_flops(model: nn.Module, images: torch.Tensor) -> dict:
    """Counted FLOPs per operator, plus analytic recurrent FLOPs when the counter left them out."""
    recurrent = {name: m for name, m in model.named_modules() if isinstance(m, (nn.LSTM, nn.GRU))}
    steps: dict[str, int] = {}
    hooks = [
        m.register_forward_hook(lambda mod, args, out, name=name: steps.__setitem__(name, args[0].shape[1]))
        for name, m in recurrent.items()
    ]  # every recurrent block of the project is batch_first: (B, T, features)
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        model(images)
    for hook in hooks:
        hook.remove()
    by_op = {str(op): int(n) for op, n in counter.get_flop_counts().get("Global", {}).items()}
    counted = counter.get_flop_counts()
    added = {}
    for name, module in recurrent.items():
        inside = sum(sum(ops.values()) for key, ops in counted.items() if key.endswith(name) and key != "Global")
        if inside == 0:  # the counter has no formula for aten.lstm / aten.gru
            added[f"{type(module).__name__} {name} (analytic)"] = recurrent_flops(module, steps[name], len(images))
    total = sum(by_op.values()) + sum(added.values())
    return {"by_op": by_op, "added": added, "total": total, "per_image": total / len(images)}


def cpu_info() -> dict:
    info = {"model": platform.processor() or platform.machine(), "cores": os.cpu_count() or 1, "mhz": 0.0, "flags": []}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "model name":
            info["model"] = value
        elif key == "cpu MHz" and not info["mhz"]:
            info["mhz"] = float(value)
        elif key == "flags" and not info["flags"]:
            info["flags"] = value.split()
        elif key == "vendor_id":
            info["vendor"] = value
        elif key == "cpu family":
            info["family"] = int(value)
    return info


def theoretical_peak(info: dict, threads: int) -> dict:
    """fp32 GFLOP/s = cores x GHz x FLOP per cycle; the FLOP per cycle is an assumption from the CPU flags."""
    flags = set(info["flags"])
    if "avx512f" in flags and info.get("vendor") == "AuthenticAMD" and info.get("family") == 25:
        per_cycle = 32
        why = "AVX-512 on AMD family 25h (Zen 4) runs on two 256-bit FMA pipes: 2 x 8 lanes x 2 (FMA)"
    elif "avx512f" in flags:
        per_cycle = 64
        why = "AVX-512: 2 FMA units x 16 fp32 lanes x 2 (FMA = multiply + add)"
    elif "avx2" in flags and "fma" in flags:
        per_cycle = 32
        why = "AVX2: 2 FMA units x 8 fp32 lanes x 2 (FMA = multiply + add)"
    else:
        per_cycle = 8
        why = "SSE: 4 fp32 lanes x (1 add + 1 multiply unit)"
    cores = min(threads, info["cores"])
    ghz = info["mhz"] / 1000
    return {
        "gflops": cores * ghz * per_cycle,
        "cores": cores,
        "ghz": ghz,
        "flop_per_cycle": per_cycle,
        "assumption": why + f"; clock = 'cpu MHz' of /proc/cpuinfo ({info['mhz']:.0f}), no boost assumed",
    }


def measured_peak(threads: int, size: int, repeats: int) -> dict:
    """GFLOP/s of an fp32 (size x size) @ (size x size) product with torch, median of ``repeats`` runs."""
    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)  # warm-up
    rates = []
    for _ in range(repeats):
        calls = 3
        started = time.perf_counter()
        for _ in range(calls):
            torch.mm(a, b)
        rates.append(calls * 2 * size**3 / (time.perf_counter() - started) / 1e9)
    return {"size": size, "threads": threads, **summary(rates)}


def measure_latency(onnx_paths: dict[str, Path], threads: int, rounds: int, calls: int) -> dict[str, float]:
    """Single-image p50 (ms) of onnxruntime models, plus dynamic int8 of the first one, interleaved in rounds."""
    with tempfile.TemporaryDirectory() as tmp:
        engines = {label: OnnxEngine(path, threads) for label, path in onnx_paths.items()}
        first_label, first_path = next(iter(onnx_paths.items()))
        int8 = quantize_dynamic_int8(first_path, Path(tmp) / "int8.onnx")
        engines[first_label.replace("fp32", "int8 dynamic")] = OnnxEngine(int8, threads)
        times: dict[str, list[float]] = {k: [] for k in engines}
        for _ in range(rounds):
            for key, engine in engines.items():
                spec = engine.spec
                x = np.random.default_rng(0).uniform(-1, 1, (1, spec.channels, spec.img_h, spec.img_w))
                x = x.astype(np.float32)
                times[key] += time_calls(lambda engine=engine, x=x: engine.logits(x), calls, warmup=3)
    return {key: statistics.median(values) for key, values in times.items()}


def latency_from_json(path: Path, folders: list[str]) -> dict[str, float]:
    """p50 of every onnxruntime backend of ``folders`` in a bench_inference.py result."""
    data = json.loads(path.read_text(encoding="utf-8"))
    return {
        f"{m['name']}: {b['backend']}": b["p50_ms"]
        for m in data.get("models", [])
        if m["name"] in folders
        for b in m["backends"]
        if b["kind"] != "torch"
    }


def run(checkpoints: Path, threads: int, quick: bool, inference_json: Path | None) -> dict:
    torch.set_num_threads(threads)
    name, checkpoint = checkpoint_of_default(checkpoints)
    loaded = load_model(checkpoint)
    spec = loaded.meta.spec
    flops = count_flops(loaded.model.eval(), torch.zeros(1, spec.channels, spec.img_h, spec.img_w))
    info = cpu_info()
    peak = measured_peak(threads, 1024 if quick else 2048, 2 if quick else 5)
    theory = theoretical_peak(info, threads)
    folders = list(dict.fromkeys([checkpoint.parent.name, name]))  # the fp32 model, then the default if it differs
    latency: dict[str, float] = {}
    if inference_json and inference_json.is_file():
        latency = latency_from_json(inference_json, folders)
        source = f"from bench_inference.py in the same run ({inference_json.name})"
    if not latency:
        paths = {
            f"{folder}: onnxruntime {'int8 (shipped)' if is_quantized(path) else 'fp32'}": path
            for folder in folders
            for path in [checkpoints / folder / "model.onnx"]
        }
        latency = measure_latency(paths, threads, 2 if quick else 5, 20 if quick else 100)
        source = "measured here (onnxruntime, interleaved rounds)"
    shares = {}
    for label, ms in latency.items():
        achieved = flops["per_image"] / (ms / 1000) / 1e9
        shares[label] = {
            "p50_ms": ms,
            "gflops": achieved,
            "of_measured": achieved / peak["median"],
            "of_theoretical": achieved / theory["gflops"] if theory["gflops"] else float("nan"),
        }
    shown = checkpoint.relative_to(ROOT) if checkpoint.is_relative_to(ROOT) else checkpoint
    return {
        "default_model": name,
        "checkpoint": str(shown),
        "input": f"{spec.img_h}x{spec.img_w}x{spec.channels}",
        "flops": flops,
        "cpu": {k: v for k, v in info.items() if k != "flags"},
        "measured_peak": peak,
        "theoretical_peak": theory,
        "latency_source": source,
        "shares": shares,
        "threads": threads,
    }


def render(result: dict) -> str:
    f, peak, theory = result["flops"], result["measured_peak"], result["theoretical_peak"]
    rows = [[op, f"{n / 1e6:,.1f}"] for op, n in sorted(f["by_op"].items())]
    rows += [[op, f"{n / 1e6:,.1f}"] for op, n in f["added"].items()]
    rows.append(["**total per image**", f"**{f['per_image'] / 1e6:,.1f}**"])
    out = [
        f"Default model `{result['default_model']}` ({result['checkpoint']}, input {result['input']}), one image:",
        "",
        md_table(["operator", "MFLOP"], rows, [False, True]),
        "",
        f"Peak fp32 on {theory['cores']} cores: measured {fmt_summary(peak, 0)} GFLOP/s (torch {peak['size']}x"
        f"{peak['size']} matrix product, {peak['threads']} threads, median (min-max) of {peak['n']}); theoretical "
        f"{theory['gflops']:.0f} GFLOP/s = {theory['cores']} cores x {theory['ghz']:.2f} GHz x "
        f"{theory['flop_per_cycle']} FLOP/cycle ({theory['assumption']}).",
        "",
        f"Latency {result['latency_source']}.",
        "",
    ]
    rows = [
        [
            label,
            f"{s['p50_ms']:.2f}",
            f"{s['gflops']:.1f}",
            f"{100 * s['of_measured']:.1f}%",
            f"{100 * s['of_theoretical']:.1f}%",
        ]
        for label, s in result["shares"].items()
    ]
    headers = ["model: backend", "p50 ms", "achieved GFLOP/s", "share of measured peak", "share of theoretical peak"]
    out.append(md_table(headers, rows, [False, True, True, True, True]))
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoints", type=Path, default=checkpoints_dir(), help="model folders")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="a smaller matrix product and fewer repeats")
    parser.add_argument("--inference-json", type=Path, default=None, help="latencies from bench_inference.py --json")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--markdown", type=Path, default=None)
    args = parser.parse_args()
    result = run(args.checkpoints, args.threads, args.quick, args.inference_json)
    publish(result, render(result), args.json, args.markdown)


if __name__ == "__main__":
    main()
