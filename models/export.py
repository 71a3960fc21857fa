"""ONNX export carrying the model's metadata (charset, input size, channels, preprocessing version)."""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import onnx
import torch

from .checkpoint import LoadedModel, load_model
from .meta import set_onnx_meta

OPSET = 18


def export_onnx(source: LoadedModel | str | Path, out_path: str | Path, opset: int = OPSET) -> Path:
    """Export a checkpoint (or a loaded model) to ONNX with a dynamic batch axis; written atomically.

    Input ``images``: float32 (N, C, H, W) from :func:`models.preprocess.preprocess`; output ``logits``:
    (N, T, num_classes). The metadata record is stored by :func:`models.meta.set_onnx_meta`.
    """
    loaded = source if isinstance(source, LoadedModel) else load_model(source)
    model = loaded.model.cpu().eval()
    spec = loaded.meta.spec
    example = torch.zeros(2, spec.channels, spec.img_h, spec.img_w)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out_path.name}.", suffix=".tmp", dir=out_path.parent)
    os.close(fd)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model, (example,), tmp, input_names=["images"], output_names=["logits"],
                dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
                opset_version=opset, dynamo=False,
            )  # fmt: skip
        proto = onnx.load(tmp)
        set_onnx_meta(proto, loaded.meta.to_dict())
        proto.producer_name = "captcha-ocr"
        onnx.checker.check_model(proto)
        onnx.save(proto, tmp)
        os.replace(tmp, out_path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return out_path
