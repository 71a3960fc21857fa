"""What a trained model file says about itself; shared by checkpoints (.pt) and ONNX exports (torch-free)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from .charset import Charset
from .preprocess import PREPROCESS_VERSION, InputSpec

META_FORMAT = 1  # version of this record's layout
ONNX_META_KEY = "captcha_ocr"  # key of the JSON record in the ONNX file's metadata_props


def set_onnx_meta(proto: Any, record: dict[str, Any]) -> None:
    """Store ``record`` (a :class:`ModelMeta` dict) as the captcha-ocr entry of an ``onnx.ModelProto``'s
    ``metadata_props``, replacing an older one; the one writer, used by export and quantization."""
    for entry in [e for e in proto.metadata_props if e.key == ONNX_META_KEY]:
        proto.metadata_props.remove(entry)
    entry = proto.metadata_props.add()
    entry.key, entry.value = ONNX_META_KEY, json.dumps(record, ensure_ascii=False, sort_keys=True)


@dataclass
class ModelMeta:
    arch: str  # registry name, e.g. "vanilla_crnn"
    arch_args: dict[str, Any]  # keyword arguments of the model class (num_classes and in_channels excluded)
    charset: str  # symbols in class order; class id = position + 1, blank = 0
    img_h: int  # input height in pixels
    img_w: int  # input width in pixels (images are padded or squeezed to it)
    channels: int  # 1 = grayscale, 3 = RGB
    preprocess_version: int = PREPROCESS_VERSION
    max_label_len: int = 8  # longest label the model is built for (T >= 2 * max_label_len + 1)
    metrics: dict[str, Any] = field(default_factory=dict)
    format: int = META_FORMAT

    @property
    def spec(self) -> InputSpec:
        return InputSpec(self.img_h, self.img_w, self.channels)

    @property
    def charset_obj(self) -> Charset:
        return Charset(self.charset)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelMeta:
        known = {f for f in cls.__dataclass_fields__}
        missing = {"arch", "arch_args", "charset", "img_h", "img_w", "channels"} - set(data)
        if missing:
            raise ValueError(f"model metadata lacks {sorted(missing)}: not a captcha-ocr model file?")
        return cls(**{k: v for k, v in data.items() if k in known})

    def check_compatible(self) -> None:
        if self.preprocess_version != PREPROCESS_VERSION:
            raise ValueError(
                f"model was trained with preprocessing v{self.preprocess_version}, this code has "
                f"v{PREPROCESS_VERSION}: re-export or retrain it with this version"
            )
