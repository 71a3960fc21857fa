"""Request and response bodies of the API. They are the OpenAPI schema, and every response is built from them, so
what the API sends is what the schema says."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from models.codec import CHARSET_PRESETS

MODEL_HELP = "model name from /models; the default model when empty"
ALLOWED_HELP = f"{', '.join(CHARSET_PRESETS)} or the characters themselves"


class ReadResult(BaseModel):
    """One image that was read."""

    filename: str
    text: str
    answer: int | None = Field(description="value of an arithmetic captcha, null otherwise")
    confidence: float = Field(description="product of the character confidences, 0..1")
    char_confidences: list[float]
    model: str = Field(description="the model that read it (a name from /models)")
    arch: str = Field(description="the same model name, under its older field name")
    width: int = Field(description="width of the uploaded image in pixels")
    height: int = Field(description="height of the uploaded image in pixels")
    ms: float = Field(description="milliseconds of this image's share of the request (decoding and the batch)")
    pred: str = Field(description="the same as `text`, under the reference tutorial's name")
    T: int = Field(description="frames of the network's output (CTC sequence length), as the tutorial sends it")


class FailedResult(BaseModel):
    """One file that could not be read; the others of the request still are."""

    filename: str
    error: str = Field(description="machine-readable kind, e.g. 'not an image', 'file too large'")
    detail: Any = None


class PredictResponse(BaseModel):
    model: str = Field(description="the model that read the images")
    arch: str = Field(description="the same model name, under its older field name")
    count: int
    results: list[ReadResult | FailedResult]
    ms: float = Field(description="milliseconds for the whole request")


class FailedPredictResponse(PredictResponse):
    """Sent with the status of the first file's error when no file of the request could be read."""

    error: str
    detail: Any = None


class Limits(BaseModel):
    max_file_bytes: int
    max_request_bytes: int
    max_files: int
    max_pixels: int
    max_frames: int


class Health(BaseModel):
    status: str = Field(description="ok, or 'no models' (then the status code is 503)")
    models: list[str]
    default: str | None
    failed: dict[str, str] = Field(description="models that would not load, with the reason")
    limits: Limits
    timestamp: float = Field(description="server time, seconds since 1970 (ddddocr's /health field)")


class ModelInfo(BaseModel):
    name: str
    arch: str = Field(description="the architecture, e.g. vanilla_crnn")
    img_h: int
    img_w: int
    channels: int
    parameters: int | None = Field(None, description="when the training run recorded it")
    onnx_mb: float
    accuracy: dict[str, Any] | None = Field(None, description="exact match etc. from the model's metadata")
    charset_size: int
    default: bool


class ErrorBody(BaseModel):
    error: str
    detail: Any = None


class Base64Request(BaseModel):
    images: list[str] | None = Field(None, description="base64 strings or data: URLs")
    image: str | None = Field(None, description="a single image, instead of `images`")
    filenames: list[str] | None = Field(None, description="optional names echoed back in the results")
    model: str | None = Field(None, description=MODEL_HELP)
    arch: str | None = Field(None, description="older name of `model`, still accepted")
    allowed: str | None = Field(None, description=ALLOWED_HELP)


class DdddocrJsonRequest(BaseModel):
    """ddddocr 1.6's ``POST /ocr`` body; ``charsets`` / ``charset_range`` restrict this request's characters."""

    image: str = Field(description="base64 string or data: URL")
    probability: bool = False
    png_fix: bool = Field(False, description="accepted; transparency is always composited on white")
    charsets: str | None = Field(None, description="characters, or a ddddocr preset 0-7")
    charset_range: int | str | None = Field(None, description="the same, under ddddocr's API name")
    colors: list[str] | None = Field(None, description="ddddocr's colour filter: accepted and ignored")
    custom_color_ranges: Any = Field(None, description="ddddocr's colour filter: accepted and ignored")
    model: str | None = Field(None, description=MODEL_HELP)


class DdddocrResponse(BaseModel):
    """Both ddddocr servers' shapes at once: ddddocr-fastapi reads ``code/message/data``, ddddocr 1.6's own API
    ``result/probability/processing_time``. ``data`` and ``result`` hold the same: the text, or with
    ``probability`` the dict of ``DdddOcr.classification(..., probability=True)``."""

    code: int
    message: str
    data: str | dict[str, Any] | None = None
    result: str | dict[str, Any] | None = None
    probability: Any = None
    processing_time: float = Field(0.0, description="seconds")
    error: str | None = Field(None, description="on errors: the machine-readable kind, as in every error of this API")
    detail: Any = Field(None, description="on errors: what went wrong")
