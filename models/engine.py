"""Inference engine: images in, text + answer + confidences out, with an onnxruntime or a torch backend.

The onnxruntime backend (the serving default) needs no torch. Both backends share preprocessing and decoding,
so they differ only in the network's arithmetic.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .arith import solve
from .codec import CASE_PRIOR, greedy_decode
from .meta import ONNX_META_KEY, ModelMeta
from .preprocess import ImageSource, preprocess

BACKENDS = ("onnx", "torch")


@dataclass
class Prediction:
    text: str
    answer: int | None  # arithmetic result when the text is an expression, else None
    confidence: float  # product of the character confidences
    char_confidences: list[float] = field(default_factory=list)


class Engine:
    """Common part of both backends; subclasses implement :meth:`logits`."""

    backend = ""

    def __init__(self, meta: ModelMeta, path: Path) -> None:
        meta.check_compatible()
        self.meta, self.path = meta, path
        self.name = meta.arch  # the model's name: its checkpoints/ folder when opened from one (load_engine)
        self.charset = meta.charset_obj
        self.spec = meta.spec
        self.case_prior = CASE_PRIOR  # models.codec: chance that a captcha's letters share one case (0 = off)

    @property
    def arch(self) -> str:
        return self.meta.arch

    def logits(self, batch: np.ndarray) -> np.ndarray:  # (N, C, H, W) -> (N, T, classes)
        raise NotImplementedError

    def predict_arrays(self, batch: np.ndarray, allowed: str | None = None) -> list[Prediction]:
        """Predict preprocessed inputs ``float32 (N, C, H, W)``."""
        if len(batch) == 0:
            return []
        return self.decode(self.logits(np.ascontiguousarray(batch, dtype=np.float32)), allowed)

    def decode(self, logits: np.ndarray, allowed: str | None = None) -> list[Prediction]:
        """Text, answer and confidences from the network's ``logits (N, T, classes)``; each row on its own, so rows
        of one batch decode as they would alone (the service batches requests with different ``allowed``)."""
        decoded = greedy_decode(logits, self.charset, allowed, self.case_prior)
        return [Prediction(d.text, solve(d.text), d.confidence, d.char_confidences) for d in decoded]

    def predict(self, sources: Sequence[ImageSource], allowed: str | None = None) -> list[Prediction]:
        """Predict images (bytes, paths or PIL images); raises :class:`ImageError` for an unreadable one."""
        return self.predict_arrays(np.stack([preprocess(s, self.spec) for s in sources]), allowed)

    def warm_up(self) -> float:
        """Run one dummy batch (first-call allocations); returns its milliseconds."""
        start = time.perf_counter()
        self.logits(np.zeros((1, self.spec.channels, self.spec.img_h, self.spec.img_w), np.float32))
        return (time.perf_counter() - start) * 1000


def read_onnx_meta(path: str | Path) -> ModelMeta:
    """The metadata record of an ONNX model file, without loading its weights into a session."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return _meta_of(session, path)


def _meta_of(session, path) -> ModelMeta:
    props = session.get_modelmeta().custom_metadata_map
    if ONNX_META_KEY not in props:
        raise ValueError(f"{path} has no captcha-ocr metadata: export it with models.export.export_onnx")
    return ModelMeta.from_dict(json.loads(props[ONNX_META_KEY]))


def x86_cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo on x86 Linux; empty elsewhere (ARM lists no ``flags``)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.partition(":")[2].split())
    except OSError:
        pass
    return set()


def saturates_here(meta: ModelMeta, cpu_flags: set[str] | None = None) -> bool:
    """Whether an int8 model with full-range 8-bit weights runs on an x86 CPU without VNNI, where onnxruntime's
    16-bit pair sums saturate (tools/quantize.py: such a model read 51% of 300 test images, its fp32 source 96%)."""
    quantization = meta.metrics.get("quantization") or {}
    if not quantization or "7-bit" in str(quantization.get("method", "")):
        return False
    flags = x86_cpu_flags() if cpu_flags is None else cpu_flags
    return bool(flags) and not flags & {"avx512_vnni", "avx_vnni"}


class OnnxEngine(Engine):
    backend = "onnx"

    def __init__(self, path: str | Path, threads: int = 0) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # 0 = onnxruntime decides (all cores)
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        super().__init__(_meta_of(self.session, path), Path(path))
        if saturates_here(self.meta):
            warnings.warn(
                f"{path}: an int8 model with 8-bit weights on a CPU without VNNI, where onnxruntime saturates and many "
                "readings come out wrong; quantize it again with tools/quantize.py (7-bit weights) or use the fp32 model",
                RuntimeWarning,
                stacklevel=2,
            )

    def logits(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(["logits"], {"images": batch})[0]


class TorchEngine(Engine):
    backend = "torch"

    def __init__(self, path: str | Path, device: str = "cpu") -> None:
        import torch

        from .checkpoint import load_model

        loaded = load_model(path, device)
        self.model, self.device, self._torch = loaded.model, device, torch
        super().__init__(loaded.meta, Path(path))

    def logits(self, batch: np.ndarray) -> np.ndarray:
        with self._torch.inference_mode():
            return self.model(self._torch.from_numpy(batch).to(self.device)).float().cpu().numpy()


DEFAULT_ARCH = "vanilla_crnn"


def discover_models(checkpoints: str | Path, backend: str = "onnx") -> dict[str, Path]:
    """Model folders under ``checkpoints/`` that hold a file for ``backend``: ``{name: folder}``, sorted by name."""
    wanted = "model.onnx" if backend == "onnx" else "best.pt"
    root = Path(checkpoints)
    if not root.is_dir():
        return {}
    return {  # a hidden folder is one being written (tools/finetune.py stages there): not a model yet
        d.name: d
        for d in sorted(root.iterdir())
        if d.is_dir() and not d.name.startswith(".") and (d / wanted).is_file()
    }


def default_model_name(checkpoints: str | Path, backend: str = "onnx") -> str | None:
    """The default model: the name in ``checkpoints/default`` if that model exists, else ``vanilla_crnn``, else
    the first model found; ``None`` when there is none."""
    found = discover_models(checkpoints, backend)
    marker = Path(checkpoints) / "default"
    preferred = [marker.read_text(encoding="utf-8").strip()] if marker.is_file() else []
    for name in [*preferred, DEFAULT_ARCH, *found]:
        if name in found:
            return name
    return None


def resolve_model_file(path: str | Path, backend: str) -> Path:
    """A model file, or a folder like ``checkpoints/<arch>/`` holding ``model.onnx`` and ``best.pt``."""
    path = Path(path)
    if path.is_dir():
        path = path / ("model.onnx" if backend == "onnx" else "best.pt")
    if not path.is_file():
        raise FileNotFoundError(f"no model file at {path}")
    return path


def load_engine(path: str | Path, backend: str = "onnx", **kwargs) -> Engine:
    """Open a model for inference: ``backend`` is ``onnx`` (default, no torch needed) or ``torch``. ``path`` is a
    model file, a model folder, or ``checkpoints/default`` (the file naming the default model)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; known: {', '.join(BACKENDS)}")
    path = Path(path)
    if path.is_file() and path.name == "default":
        name = default_model_name(path.parent, backend)
        if name is None:
            raise FileNotFoundError(f"{path}: no model under {path.parent}")
        path = path.parent / name
    file = resolve_model_file(path, backend)
    engine = OnnxEngine(file, **kwargs) if backend == "onnx" else TorchEngine(file, **kwargs)
    if Path(path).is_dir():  # e.g. checkpoints/vanilla_crnn_int8/: the folder names the model
        engine.name = Path(path).name
    return engine
