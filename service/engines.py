"""The models one API process serves: loaded once at start-up, picked by name per request."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from models.codec import CHARSET_PRESETS, resolve_allowed
from models.engine import Engine, default_model_name, discover_models, load_engine
from service.batcher import MicroBatcher
from service.errors import ApiError
from service.settings import MAX_ALLOWED_CHARS, Settings

log = logging.getLogger("captcha_ocr.api")


@dataclass
class Engines:
    """The loaded models by name, the ones that failed to load (name -> reason), the default, and the thread pool
    that runs them."""

    settings: Settings
    loaded: dict[str, Engine] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    default: str | None = None
    executor: ThreadPoolExecutor | None = None
    batchers: dict[str, MicroBatcher] = field(default_factory=dict)

    @classmethod
    def load(cls, settings: Settings) -> Engines:
        """Every ``<name>/model.onnx`` of ``settings.checkpoints``, warmed up. Names come from the folder listing
        only, so a request can only pick one of them; a bad file does not take the other models down."""
        engines = cls(settings)
        for name, folder in discover_models(settings.checkpoints).items():
            try:
                engine = load_engine(folder, "onnx", threads=settings.threads)
                engine.warm_up()
                engines.loaded[name] = engine
            except Exception as e:
                engines.failed[name] = f"{type(e).__name__}: {e}"
                log.error("model %s not loaded: %s", name, engines.failed[name])
        default = default_model_name(settings.checkpoints)
        engines.default = default if default in engines.loaded else next(iter(engines.loaded), None)
        engines.executor = ThreadPoolExecutor(settings.inference_workers, thread_name_prefix="recognize")
        engines.batchers = {name: MicroBatcher(engine, engines.executor, settings.batch_max, settings.batch_wait_ms)
                            for name, engine in engines.loaded.items()}  # fmt: skip
        log.info("models loaded: %s (default %s)", ", ".join(engines.loaded) or "none", engines.default)
        return engines

    def close(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=False, cancel_futures=True)

    def pick(self, name: str | None) -> Engine:
        """The model called ``name``, the default one when ``name`` is empty."""
        if not self.loaded:
            raise ApiError(503, "no models loaded",
                           f"no <name>/model.onnx under {self.settings.checkpoints}: train one (make train)")  # fmt: skip
        name = name or self.default
        if name not in self.loaded:
            raise ApiError(404, "unknown model", {"requested": name, "known": sorted(self.loaded)})
        return self.loaded[name]


def check_allowed(engine: Engine, allowed: str | None) -> str | None:
    """``allowed`` (a preset or characters) resolved to characters, or None for any; refused when it is too long
    or names no character the model knows."""
    resolved = resolve_allowed(allowed)
    if resolved is None:
        return None
    if len(resolved) > MAX_ALLOWED_CHARS:
        raise ApiError(400, "invalid allowed", f"at most {MAX_ALLOWED_CHARS} characters")
    if not engine.charset.ids_for(resolved):
        raise ApiError(400, "invalid allowed",
                       f"none of these characters is known to model {engine.name}; presets: "
                       f"{', '.join(CHARSET_PRESETS)}")  # fmt: skip
    return resolved


def check_count(n: int, settings: Settings) -> None:
    if n == 0:
        raise ApiError(400, "no images", "send at least one image")
    if n > settings.max_files:
        raise ApiError(413, "too many files", f"{n} images; the limit is {settings.max_files} per request")


# ---- what every route may ask for (tests can override them with app.dependency_overrides) ----
def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_engines(request: Request) -> Engines:
    return request.app.state.engines


SettingsDep = Annotated[Settings, Depends(get_settings)]
EnginesDep = Annotated[Engines, Depends(get_engines)]
