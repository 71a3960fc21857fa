"""Quantize an exported model to int8 (static, QDQ, per-channel weights) for faster CPU inference.

    python tools/quantize.py --model checkpoints/vanilla_crnn --calib dataset/val --out checkpoints/vanilla_crnn_int8
    python tools/quantize.py --model m.onnx --calib dataset/val --out /tmp/q --check dataset/test --max-drop 0.3

Activation ranges are calibrated on ``--samples`` images of ``--calib`` (our own generated data, never the real
captchas). The result is ``<out>/model.onnx`` carrying the source's metadata record plus a ``quantization`` entry in
its metrics, so ``infer.py``, the servers and ``tools/evaluate.py`` open it like any other model folder (onnxruntime
only; there is no ``best.pt`` in an int8 folder). With ``--check``, fp32 and int8 are scored on the same folder and
the tool refuses (exit 1, nothing written) when exact match drops by more than ``--max-drop`` points.

Weights are quantized to 7 bits (``reduce_range``: [-64, 64]). On x86 CPUs without VNNI (AVX2 only: AMD Zen 1-3,
Intel before Ice Lake/Alder Lake) onnxruntime multiplies uint8 activations by int8 weights with ``vpmaddubsw``, which
adds pairs of products into 16 bits and saturates when two 8-bit weights meet large activations, so a full-range
model reads far worse there than on a VNNI CPU. With 7-bit weights no pair can leave 16 bits
(2 x 255 x 64 < 32768), so every CPU computes the same integers (docs/training-log.md, "int8 on CPUs without VNNI").

Dynamic quantization is not offered: onnxruntime runs its ConvInteger kernels slower than fp32 convolutions
(``bench/bench_inference.py`` measures it), while static QDQ convolutions use the CPU's int8 dot-product units.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from models.dataset import read_folder
from models.engine import OnnxEngine, read_onnx_meta, resolve_model_file
from models.meta import set_onnx_meta
from models.preprocess import batches, prepare_batch
from tools.evaluate import score_samples


def calibration_batches(folder: Path, spec, samples: int, batch: int, seed: int) -> list[np.ndarray]:
    """Preprocessed batches of ``samples`` images drawn at random (fixed seed) from a labelled folder."""
    found, _ = read_folder(folder)
    if not found:
        raise SystemExit(f"error: no labelled images in {folder} to calibrate on")
    chosen = random.Random(seed).sample(found, min(samples, len(found)))
    prepared = prepare_batch([sample.path for sample in chosen], spec)
    for index, error in prepared.failures:
        print(f"warning: skipped {chosen[index].path}: {error}", file=sys.stderr)
    return list(batches(prepared.inputs, batch))


def exact_match(engine: OnnxEngine, folder: Path, limit: int, seed: int) -> tuple[float, int]:
    """Exact match (case-sensitive, %) of ``engine`` on up to ``limit`` images of ``folder`` (0 = all)."""
    samples, _ = read_folder(folder)
    if limit and len(samples) > limit:
        samples = random.Random(seed).sample(samples, limit)
    rows, _ = score_samples(engine, samples)
    return 100.0 * sum(r.label == r.pred for r in rows) / max(1, len(rows)), len(rows)


def quantize(source: Path, out_file: Path, batches: list[np.ndarray]) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(batches)

        def get_next(self) -> dict | None:
            batch = next(self.batches, None)
            return None if batch is None else {"images": batch}

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(source), str(prepared))
        quantize_static(
            str(prepared),
            str(out_file),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            reduce_range=True,  # 7-bit weights: no 16-bit saturation on AVX2-only CPUs (module docstring)
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )


def write_meta(path: Path, record: dict) -> None:
    import onnx

    proto = onnx.load(str(path))
    set_onnx_meta(proto, record)
    onnx.save(proto, str(path))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="model.onnx or a checkpoints/<arch>/ folder")
    parser.add_argument("--calib", required=True, type=Path, help="labelled folder of our own images")
    parser.add_argument("--out", required=True, type=Path, help="folder for model.onnx (created)")
    parser.add_argument("--samples", type=int, default=512, help="calibration images")
    parser.add_argument("--check", type=Path, help="labelled folder to compare fp32 and int8 on")
    parser.add_argument("--check-limit", type=int, default=0, help="images of --check to use (0 = all)")
    parser.add_argument("--max-drop", type=float, default=0.3, help="largest exact-match drop accepted (points)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    try:
        source = resolve_model_file(args.model, "onnx")
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    meta = read_onnx_meta(source)
    print(f"{meta.arch}: calibrating on {args.samples} images of {args.calib}")
    batches = calibration_batches(args.calib, meta.spec, args.samples, 32, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / "model.onnx"
        quantize(source, staged, batches)
        record = meta.to_dict()
        info = {
            "method": "static QDQ int8, per-channel 7-bit weights (reduce_range)",
            "calibration": f"{args.samples} x {args.calib.name}",
        }
        if args.check:
            fp32, n = exact_match(OnnxEngine(source), args.check, args.check_limit, args.seed)
            write_meta(staged, {**record, "metrics": {**meta.metrics}})
            int8, _ = exact_match(OnnxEngine(staged), args.check, args.check_limit, args.seed)
            print(f"exact match on {n} images of {args.check}: fp32 {fp32:.2f}%, int8 {int8:.2f}% ({int8 - fp32:+.2f})")
            if fp32 - int8 > args.max_drop:
                print(f"error: int8 loses {fp32 - int8:.2f} points (> --max-drop {args.max_drop}); not written")
                return 1
            info.update({"check": f"{n} x {args.check.name}", "em_fp32": round(fp32, 2), "em_int8": round(int8, 2)})
        record["metrics"] = {**meta.metrics, "quantization": info}
        write_meta(staged, record)
        args.out.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(staged, args.out / "model.onnx")
    size = (args.out / "model.onnx").stat().st_size / 2**20
    print(f"wrote {args.out / 'model.onnx'} ({size:.1f} MiB, from {source.stat().st_size / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
