"""Self-describing checkpoints: weights plus :class:`~models.meta.ModelMeta`, training state optional.

Written atomically (temporary file in the same folder, fsync, rename), read with ``weights_only=True``.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .charset import Charset
from .meta import ModelMeta
from .preprocess import InputSpec
from .registry import build_model

_COMPILED_PREFIX = "_orig_mod."  # torch.compile wraps the module; strip it so any consumer can load the weights
_DDP_PREFIX = "module."


def clean_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """State dict of the bare model (unwrapped from torch.compile / DistributedDataParallel)."""
    inner = getattr(model, "_orig_mod", model)
    inner = getattr(inner, "module", inner)
    state = inner.state_dict()
    return {k.removeprefix(_COMPILED_PREFIX).removeprefix(_DDP_PREFIX): v.detach().cpu() for k, v in state.items()}


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to ``path`` so that a kill at any moment leaves either the old file or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(
    path: str | Path, model: nn.Module, meta: ModelMeta, training: dict[str, Any] | None = None
) -> None:
    """Write weights, metadata and (optionally) the training state (optimizer, scheduler, epoch, ...)."""
    record: dict[str, Any] = {"meta": meta.to_dict(), "state_dict": clean_state_dict(model)}
    if training is not None:
        record["training"] = training
    atomic_save(record, path)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The raw checkpoint dict, loaded safely (no pickled code)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"{path} is not a readable checkpoint ({type(e).__name__}: {e})") from e
    if not isinstance(record, dict) or "meta" not in record or "state_dict" not in record:
        raise ValueError(f"{path} is not a captcha-ocr checkpoint (no meta/state_dict)")
    return record


@dataclass
class LoadedModel:
    model: nn.Module  # in eval mode
    meta: ModelMeta

    @property
    def charset(self) -> Charset:
        return self.meta.charset_obj

    @property
    def spec(self) -> InputSpec:
        return self.meta.spec


def model_from_meta(meta: ModelMeta) -> nn.Module:
    return build_model(
        meta.arch, Charset(meta.charset).num_classes, meta.channels, max_label_len=meta.max_label_len, **meta.arch_args
    )


def load_model(path: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    """Build the model a checkpoint describes and load its weights strictly; the one loader for every consumer."""
    record = read_checkpoint(path)
    meta = ModelMeta.from_dict(record["meta"])
    meta.check_compatible()
    model = model_from_meta(meta)
    model.load_state_dict(record["state_dict"], strict=True)
    return LoadedModel(model.to(device).eval(), meta)
