"""Parameters, ONNX size and single-image CPU latency of each recognizer at a given input size.

    python bench/model_stats.py [--sizes 32x128,48x160] [--threads 2] [--repeats 5]

Weights are random (latency does not depend on them). Each latency is the median over ``--repeats`` runs of
200 single-image calls after 20 warm-up calls; p90 is taken over all calls.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch

from bench.common import time_calls
from models.charset import Charset
from models.checkpoint import save_checkpoint
from models.engine import OnnxEngine
from models.export import export_onnx
from models.meta import ModelMeta
from models.registry import build_model, default_arch_args, default_channels

# The tutorial's 556-symbol charset size: digits, letters, 7 symbols and 487 CJK characters.
NUM_SYMBOLS = 556
VARIANTS = {
    "vanilla_crnn": ("vanilla_crnn", {}),
    "vanilla_crnn (slim)": ("vanilla_crnn", {"channels": (32, 64, 128, 128, 256, 256, 256), "hidden": 128}),
    "crnn_resnet34": ("crnn_resnet34", {}),
    "svtr_tiny": ("svtr_tiny", {}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="32x128")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    charset = "".join(chr(0x4E00 + i) for i in range(NUM_SYMBOLS))
    print(f"# {platform.processor() or platform.machine()}, {args.threads} threads, torch {torch.__version__}")
    print("| model | input HxW | params (M) | ONNX MiB | ORT p50 ms | ORT p90 ms | torch p50 ms |")
    print("|---|---|---|---|---|---|---|")
    for size in args.sizes.split(","):
        img_h, img_w = map(int, size.split("x"))
        for label, (arch, extra) in VARIANTS.items():
            channels = default_channels(arch)
            arch_args = {**default_arch_args(arch, img_h, img_w), **extra}
            meta = ModelMeta(arch, arch_args, charset, img_h, img_w, channels)
            model = build_model(arch, Charset(charset).num_classes, channels, **arch_args).eval()
            params = sum(p.numel() for p in model.parameters()) / 1e6
            with tempfile.TemporaryDirectory() as tmp:
                save_checkpoint(Path(tmp) / "best.pt", model, meta)
                onnx_path = export_onnx(Path(tmp) / "best.pt", Path(tmp) / "model.onnx")
                size_mib = onnx_path.stat().st_size / 2**20
                engine = OnnxEngine(onnx_path, threads=args.threads)
                x = np.random.default_rng(0).normal(size=(1, channels, img_h, img_w)).astype(np.float32)
                ort_runs = [
                    time_calls(lambda engine=engine, x=x: engine.logits(x), 200, 20) for _ in range(args.repeats)
                ]
                xt = torch.from_numpy(x)
                with torch.inference_mode():
                    eager_runs = [
                        time_calls(lambda model=model, xt=xt: model(xt), calls=50, warmup=5)
                        for _ in range(args.repeats)
                    ]
            ort_p50 = statistics.median(statistics.median(r) for r in ort_runs)
            ort_p90 = float(np.percentile(np.concatenate(ort_runs), 90))
            eager_p50 = statistics.median(statistics.median(r) for r in eager_runs)
            print(
                f"| {label} | {img_h}x{img_w} | {params:.2f} | {size_mib:.1f} | {ort_p50:.2f} | {ort_p90:.2f} "
                f"| {eager_p50:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
