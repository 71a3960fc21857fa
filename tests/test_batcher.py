"""Micro-batching (service/batcher.py): batched results equal single-image ones, the size and wait bounds hold, and
a slow decode delays only its own request."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from helpers import ROOT, realdev_rows
from models.engine import load_engine
from models.preprocess import prepare_batch
from service.batcher import MicroBatcher

MODEL = ROOT / "checkpoints" / "vanilla_crnn_int8"


@pytest.fixture(scope="module")
def engine():
    if not (MODEL / "model.onnx").is_file():
        pytest.skip(f"no shipped model at {MODEL}")
    return load_engine(MODEL, threads=1)


@pytest.fixture(scope="module")
def images() -> list[bytes]:
    found = [path.read_bytes() for family in ("easy", "ruoyi", "hutool") for path, _ in realdev_rows(family)[:4]]
    if len(found) < 8:
        pytest.skip("realdev samples not found")
    return found


class Recording:
    """An engine whose network calls are recorded (batch sizes), optionally slowed down."""

    def __init__(self, engine, delay_s: float = 0.0) -> None:
        self.engine, self.delay_s, self.sizes = engine, delay_s, []
        self.charset = engine.charset
        self.lock = threading.Lock()

    def logits(self, batch: np.ndarray) -> np.ndarray:
        with self.lock:
            self.sizes.append(len(batch))
        time.sleep(self.delay_s)
        return self.engine.logits(batch)


def run_concurrently(batcher: MicroBatcher, inputs: list[np.ndarray]) -> list[np.ndarray]:
    async def main():
        return await asyncio.gather(*(batcher.logits(x) for x in inputs))

    return asyncio.run(main())


def test_batched_results_equal_single_image_results(engine, images):
    prepared = prepare_batch(images, engine.spec)
    singles = [prepare_batch([data], engine.spec).inputs for data in images]
    allowed = [None, "0123456789+-*/=?", None, "abcdefghijklmnopqrstuvwxyz"] * len(images)
    with ThreadPoolExecutor(2) as pool:
        recording = Recording(engine)
        batcher = MicroBatcher(recording, pool, max_batch=64, wait_ms=50)
        batched = run_concurrently(batcher, singles)
    assert recording.sizes == [len(images)]  # one network call for all of them
    for i, (x, logits) in enumerate(zip(singles, batched, strict=True)):
        alone = engine.predict_arrays(x, allowed[i])[0]
        together = engine.decode(logits, allowed[i])[0]
        assert (together.text, together.answer) == (alone.text, alone.answer)
        assert together.confidence == pytest.approx(alone.confidence, abs=1e-4)
        assert np.allclose(together.char_confidences, alone.char_confidences, atol=1e-4)
    assert len(prepared.kept) == len(images)


def test_batches_never_exceed_the_size_bound(engine, images):
    singles = [prepare_batch([data], engine.spec).inputs for data in images[:10]]
    pair = prepare_batch(images[:3], engine.spec).inputs  # a 3-image request in the middle
    with ThreadPoolExecutor(2) as pool:
        recording = Recording(engine)
        batcher = MicroBatcher(recording, pool, max_batch=4, wait_ms=50)
        out = run_concurrently(batcher, singles[:5] + [pair] + singles[5:])
    assert max(recording.sizes) <= 4 and sum(recording.sizes) == 13
    assert [len(x) for x in out] == [1] * 5 + [3] + [1] * 5
    assert len(recording.sizes) == batcher.calls


def test_a_lone_request_waits_at_most_the_bound_and_a_full_batch_not_at_all(engine, images):
    x = prepare_batch(images[:1], engine.spec).inputs
    with ThreadPoolExecutor(2) as pool:
        engine.logits(x)  # warm
        lone = MicroBatcher(engine, pool, max_batch=8, wait_ms=150)
        start = time.perf_counter()
        run_concurrently(lone, [x])
        waited = time.perf_counter() - start
        full = MicroBatcher(engine, pool, max_batch=4, wait_ms=5000)
        start = time.perf_counter()
        run_concurrently(full, [x] * 4)
        filled = time.perf_counter() - start
    assert 0.15 <= waited < 1.0
    assert filled < 1.0  # a full batch goes at once, not after 5 s
    assert MicroBatcher(engine, None, max_batch=1).enabled is False
    assert MicroBatcher(engine, None, wait_ms=0).enabled is False
    with pytest.raises(ValueError):
        MicroBatcher(engine, None, max_batch=0)


def test_a_network_error_reaches_every_request_of_its_batch(engine, images):
    class Broken:
        charset = engine.charset

        def logits(self, batch):
            raise RuntimeError("onnxruntime failed")

    x = prepare_batch(images[:1], engine.spec).inputs

    async def main(batcher):
        return await asyncio.gather(*(batcher.logits(x) for _ in range(3)), return_exceptions=True)

    with ThreadPoolExecutor(2) as pool:
        out = asyncio.run(main(MicroBatcher(Broken(), pool, max_batch=8, wait_ms=20)))
    assert all(isinstance(e, RuntimeError) for e in out)


def test_the_service_batches_requests_and_a_slow_decode_delays_only_its_own(engine, images, monkeypatch):
    import service.recognize
    from server_fastapi import Settings, create_app
    from service.engines import Engines

    slow = images[0]
    real_prepare_batch = service.recognize.prepare_batch

    def slow_for_one(sources, spec, **kwargs):
        if any(s == slow for s in sources):
            time.sleep(1.5)  # a hostile or huge image taking long to decode
        return real_prepare_batch(sources, spec, **kwargs)

    monkeypatch.setattr(service.recognize, "prepare_batch", slow_for_one)
    checkpoints = MODEL.parent
    settings = Settings(checkpoints=checkpoints, threads=1, inference_workers=4, batch_max=16, batch_wait_ms=20)
    app = create_app(settings)

    async def main():
        app.state.engines = Engines.load(settings)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:

            async def post(data: bytes, allowed: str | None = None):
                start = time.perf_counter()
                form = {"model": MODEL.name, **({"allowed": allowed} if allowed else {})}
                reply = await client.post("/predict", files={"files": ("x.png", data)}, data=form)
                return reply, time.perf_counter() - start

            slow_task = asyncio.create_task(post(slow))
            await asyncio.sleep(0.05)
            fast = await asyncio.gather(*(post(data) for data in images[1:4]), post(images[4], "digits"))
            return await slow_task, fast, app.state.engines.batchers[MODEL.name].calls

    (slow_reply, slow_s), fast, calls = asyncio.run(main())
    app.state.engines.close()
    assert slow_reply.status_code == 200 and slow_s >= 1.5
    for (reply, seconds), data, allowed in zip(fast, images[1:5], [None, None, None, "0123456789"], strict=True):
        assert reply.status_code == 200 and seconds < 1.0, seconds  # did not wait for the slow decode
        alone = engine.predict([data], allowed)[0]
        assert reply.json()["results"][0]["text"] == alone.text
    assert calls < 5  # the four fast requests shared network calls
