"""Read captchas from the command line.

    python infer.py captcha.png                          # default model (checkpoints/, onnxruntime)
    python infer.py --arch svtr_tiny --backend torch imgs/ a.gif
    python infer.py --model path/to/model.onnx --jsonl folder/ > results.jsonl
    python infer.py --allowed digits code.png            # restrict the output to a character set

Prints ``file  text  [= answer]  confidence`` per image, or with ``--jsonl`` one JSON object per line:
``{"file", "text", "answer", "confidence", "model"}`` (plus ``arch``, the old name of ``model``) (``answer`` is null when the text is not arithmetic).
Folders are searched recursively for PNG, JPEG, GIF, BMP and WebP. Images are read in batches; an unreadable
file is reported on stderr and the run goes on (exit status 1 if any failed).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from models.codec import add_case_prior_argument
from models.engine import BACKENDS, default_model_name, discover_models, load_engine
from models.paths import CHECKPOINTS
from models.preprocess import batches, prepare_batch
from models.registry import ARCH_NAMES

EXTENSIONS = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp"}


def find_images(paths: list[str]) -> list[Path]:
    """Files as given, and image files under folders (sorted, duplicates removed)."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file())
        else:
            found.append(path)
    return list(dict.fromkeys(found))


def default_model(backend: str) -> Path:
    name = default_model_name(CHECKPOINTS, backend)
    if name is None:
        raise SystemExit(f"no model in {CHECKPOINTS}: train one (make train) or pass --model PATH")
    return CHECKPOINTS / name


def main() -> int:
    parser = argparse.ArgumentParser(description="Read captcha images with a trained model.")
    parser.add_argument("paths", nargs="+", help="image files and/or folders")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--arch", help="a model in checkpoints/ by name, e.g. " + ", ".join(ARCH_NAMES))
    which.add_argument("--model", help="a model file (.onnx or .pt) or a folder holding model.onnx / best.pt")
    parser.add_argument("--backend", choices=BACKENDS, default="onnx")
    parser.add_argument("--jsonl", action="store_true", help="one JSON object per image")
    parser.add_argument("--allowed", help="digits, letters, upper, lower, alnum, arith, or the characters themselves")
    parser.add_argument("--batch", type=int, default=64)
    add_case_prior_argument(parser)
    args = parser.parse_args()

    if args.arch and not (CHECKPOINTS / args.arch).is_dir():
        known = ", ".join(discover_models(CHECKPOINTS, args.backend)) or "none"
        print(f"error: no model {args.arch!r} in {CHECKPOINTS} (known: {known})", file=sys.stderr)
        return 2
    model_path = (
        Path(args.model) if args.model else CHECKPOINTS / args.arch if args.arch else default_model(args.backend)
    )
    try:
        engine = load_engine(model_path, args.backend)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    engine.case_prior = args.case_prior
    files = find_images(args.paths)
    if not files:
        print("error: no images found in " + " ".join(args.paths), file=sys.stderr)
        return 2
    failures = 0
    for chunk in batches(files, args.batch):
        batch = prepare_batch(chunk, engine.spec)
        for index, error in batch.failures:
            failures += 1
            print(f"error: {chunk[index]}: {error}", file=sys.stderr)
        if not batch.kept:
            continue
        predictions = engine.predict_arrays(batch.inputs, args.allowed)
        for path, pred in zip([chunk[i] for i in batch.kept], predictions, strict=True):
            if args.jsonl:
                # "model" names the model file's folder; "arch" is the same value under its old name
                record = {"file": str(path), "text": pred.text, "answer": pred.answer,
                          "confidence": round(pred.confidence, 6), "model": engine.name, "arch": engine.name}  # fmt: skip
                print(json.dumps(record, ensure_ascii=False))
            else:
                answer = "" if pred.answer is None else f" = {pred.answer}"
                print(f"{path}\t{pred.text}{answer}\t{pred.confidence:.3f}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
