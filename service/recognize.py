"""The work of one request: image bytes in, one result per image out (decoding in the worker pool, the network
through the model's micro-batcher)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
import time
from dataclasses import dataclass

import numpy as np

from models.engine import Engine, Prediction
from models.preprocess import Batch, prepare_batch
from service.engines import Engines
from service.errors import ApiError
from service.schemas import FailedResult, ReadResult
from service.settings import Settings

Item = tuple[str, bytes | ApiError]  # (filename, its bytes, or why it was refused before decoding)


@dataclass
class Prepared:
    """A request's images after decoding: the network inputs of the readable ones, and a result for every other
    one already (with its HTTP status)."""

    items: list[Item]
    batch: Batch
    readable: list[int]  # item index of each image given to prepare_batch
    failed: dict[int, tuple[FailedResult, int]]
    started: float

    def results(
        self, engine: Engine, predictions: list[Prediction], frames: int
    ) -> tuple[list[ReadResult | FailedResult], list[int]]:
        """One result per item, in order, and the status of each failed one in the same order."""
        results: list[ReadResult | FailedResult | None] = [None] * len(self.items)
        for index, (failed, _) in self.failed.items():
            results[index] = failed
        share_ms = (time.perf_counter() - self.started) * 1000 / max(1, len(self.batch.kept))
        for position, (width, height), p in zip(self.batch.kept, self.batch.sizes, predictions, strict=True):
            index = self.readable[position]
            results[index] = ReadResult(
                filename=self.items[index][0], text=p.text, answer=p.answer, confidence=round(p.confidence, 6),
                char_confidences=[round(c, 6) for c in p.char_confidences], model=engine.name, arch=engine.name,
                width=width, height=height, ms=round(share_ms, 2), pred=p.text, T=frames,
            )  # fmt: skip
        return results, [self.failed[index][1] for index in sorted(self.failed)]


def prepare(engine: Engine, items: list[Item], settings: Settings) -> Prepared:
    """Decode and preprocess a request's images (in a worker thread); unreadable ones get their result here."""
    started = time.perf_counter()
    failed: dict[int, tuple[FailedResult, int]] = {}
    readable = []
    for index, (filename, data) in enumerate(items):
        if isinstance(data, ApiError):
            failed[index] = (FailedResult(filename=filename, error=data.error, detail=data.detail), data.status)
        else:
            readable.append(index)
    batch = prepare_batch([items[i][1] for i in readable], engine.spec,
                          max_frames=settings.max_frames, max_pixels=settings.max_pixels)  # fmt: skip
    for position, error in batch.failures:
        index = readable[position]
        failed[index] = (FailedResult(filename=items[index][0], error=error.kind, detail=str(error)), 400)
    return Prepared(items, batch, readable, failed, started)


async def read_items(
    engines: Engines, engine: Engine, items: list[Item], settings: Settings
) -> tuple[Prepared, np.ndarray | None]:
    """Decode in the worker pool (a slow decode delays only this request), then run the network in a batch shared
    with concurrent requests (service/batcher.py). Returns the prepared request and the logits of its readable
    images (None when none is)."""
    prepared = await asyncio.get_running_loop().run_in_executor(engines.executor, prepare, engine, items, settings)
    if not prepared.batch.kept:
        return prepared, None
    return prepared, await engines.batchers[engine.name].logits(prepared.batch.inputs)


async def read_upload(upload, max_bytes: int) -> bytes | ApiError:
    """An uploaded file's bytes, or why they are refused. At most one byte over the limit is read: a larger file is
    refused without being read into memory."""
    data = await upload.read(max_bytes + 1)
    await upload.close()
    if len(data) > max_bytes:
        return ApiError(413, "file too large", f"the limit is {max_bytes} bytes per image")
    return data


def decode_base64(text: str, max_bytes: int) -> bytes | ApiError:
    """The bytes of a base64 string or ``data:...;base64,`` URL, or why they are refused."""
    payload = text.strip()
    if payload.startswith("data:"):
        header, _, payload = payload.partition(",")
        if ";base64" not in header:
            return ApiError(400, "not base64", "a data: URL must be base64-encoded (data:image/png;base64,...)")
    payload = re.sub(r"\s+", "", payload)
    if len(payload) * 3 // 4 > max_bytes + 3:
        return ApiError(413, "file too large", f"the image is over the limit of {max_bytes} bytes")
    try:
        data = base64.b64decode(payload + "=" * (-len(payload) % 4), validate=True)
    except (binascii.Error, ValueError):
        return ApiError(400, "not base64", "the string is neither base64 nor a base64 data: URL")
    if len(data) > max_bytes:
        return ApiError(413, "file too large", f"the image is {len(data)} bytes; the limit is {max_bytes}")
    return data
