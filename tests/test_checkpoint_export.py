"""Checkpoints, ONNX export and both inference backends."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import TEST_CHARSET, realdev_rows
from models.checkpoint import atomic_save, load_model, read_checkpoint, save_checkpoint
from models.engine import load_engine, read_onnx_meta
from models.meta import ModelMeta
from models.preprocess import PREPROCESS_VERSION, ImageError
from models.registry import ARCH_NAMES, build_model


def sample_images(n_per_family: int = 6) -> list[Path]:
    """Real captchas (PNG, GIF, arithmetic) from ../shared/realdev."""
    paths = []
    for family in ("easy", "easy_gif", "ctext", "ruoyi"):
        paths += [p for p, _ in realdev_rows(family)[:n_per_family]]
    return paths


@pytest.mark.parametrize("arch", ARCH_NAMES)
def test_onnx_and_torch_backends_agree_on_real_images(sharp_models, arch):
    images = sample_images()
    onnx_engine = load_engine(sharp_models[arch], "onnx")
    torch_engine = load_engine(sharp_models[arch], "torch")
    a, b = onnx_engine.predict(images), torch_engine.predict(images)
    assert any(p.text for p in a), "the test model should emit characters"
    assert len({p.text for p in a}) > 3, "texts should vary between images"
    for pa, pb in zip(a, b, strict=True):
        assert pa.text == pb.text
        assert pa.confidence == pytest.approx(pb.confidence, abs=1e-4)
        assert pa.char_confidences == pytest.approx(pb.char_confidences, abs=1e-4)


def test_onnx_carries_metadata(sharp_models):
    meta = read_onnx_meta(sharp_models["svtr_tiny"] / "model.onnx")
    assert meta.charset == TEST_CHARSET
    assert (meta.img_h, meta.img_w, meta.channels) == (32, 128, 3)
    assert meta.preprocess_version == PREPROCESS_VERSION
    assert meta.arch == "svtr_tiny" and meta.arch_args == {"img_h": 32, "img_w": 128}


def test_dynamic_batch(sharp_models):
    engine = load_engine(sharp_models["vanilla_crnn"], "onnx")
    for n in (1, 5):
        batch = np.zeros((n, 1, 32, 128), np.float32)
        assert engine.logits(batch).shape == (n, 32, len(TEST_CHARSET) + 1)


def test_checkpoint_roundtrip_is_exact(tmp_path):
    meta = ModelMeta("vanilla_crnn", {}, TEST_CHARSET, 32, 128, 1, metrics={"em": 0.5})
    model = build_model("vanilla_crnn", len(TEST_CHARSET) + 1, 1).eval()
    save_checkpoint(tmp_path / "m.pt", model, meta, training={"epoch": 3})
    loaded = load_model(tmp_path / "m.pt")
    x = torch.randn(2, 1, 32, 128)
    with torch.no_grad():
        assert torch.equal(model(x), loaded.model(x))
    assert loaded.meta == meta and not loaded.model.training
    assert read_checkpoint(tmp_path / "m.pt")["training"] == {"epoch": 3}
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no temporary file left behind


def test_compiled_or_ddp_prefixes_are_stripped(tmp_path):
    meta = ModelMeta("vanilla_crnn", {}, TEST_CHARSET, 32, 128, 1)
    model = build_model("vanilla_crnn", len(TEST_CHARSET) + 1, 1)
    wrapped = torch.nn.Module()
    wrapped._orig_mod = model  # what torch.compile's wrapper exposes
    save_checkpoint(tmp_path / "m.pt", wrapped, meta)
    state = read_checkpoint(tmp_path / "m.pt")["state_dict"]
    assert not any(k.startswith(("_orig_mod.", "module.")) for k in state)
    load_model(tmp_path / "m.pt")  # strict load succeeds


def test_loading_refuses_pickled_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"meta": {}, "state_dict": {}, "x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        read_checkpoint(tmp_path / "evil.pt")


def test_not_a_checkpoint(tmp_path):
    atomic_save({"weights": torch.zeros(1)}, tmp_path / "x.pt")
    with pytest.raises(ValueError, match="not a captcha-ocr checkpoint"):
        load_model(tmp_path / "x.pt")
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "missing.pt")


def test_preprocess_version_mismatch_is_refused(tmp_path):
    meta = ModelMeta("vanilla_crnn", {}, TEST_CHARSET, 32, 128, 1, preprocess_version=PREPROCESS_VERSION + 1)
    save_checkpoint(tmp_path / "m.pt", build_model("vanilla_crnn", len(TEST_CHARSET) + 1, 1), meta)
    with pytest.raises(ValueError, match="preprocessing"):
        load_model(tmp_path / "m.pt")


def test_engine_bad_image_raises_image_error(sharp_models):
    engine = load_engine(sharp_models["vanilla_crnn"])
    with pytest.raises(ImageError):
        engine.predict([b"not an image"])


def test_engine_answer_for_arithmetic(sharp_models):
    from models.engine import Prediction

    engine = load_engine(sharp_models["vanilla_crnn"])
    # Force the decoder's input to spell "3*8=?" and check the engine solves it.
    ids = [TEST_CHARSET.index(c) + 1 for c in "3*8=?"]
    logits = np.full((1, 32, len(TEST_CHARSET) + 1), -10.0, np.float32)
    logits[0, :, 0] = 10.0
    for i, k in enumerate(ids):
        logits[0, 2 * i + 1, :] = -10.0
        logits[0, 2 * i + 1, k] = 10.0
    engine.logits = lambda batch: logits
    (pred,) = engine.predict_arrays(np.zeros((1, 1, 32, 128), np.float32))
    assert isinstance(pred, Prediction) and pred.text == "3*8=?" and pred.answer == 24


def test_serving_backend_needs_no_torch(sharp_models):
    """The onnxruntime engine runs with torch made unimportable (the `make ready` tier)."""
    code = f"""
import sys
sys.modules["torch"] = None  # any `import torch` now fails
from models.engine import load_engine
engine = load_engine({str(sharp_models["crnn_resnet34"])!r}, "onnx")
from PIL import Image
print(engine.predict([Image.new("RGB", (160, 60), "white")])[0].text is not None)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True"


def test_meta_json_roundtrip():
    meta = ModelMeta("svtr_tiny", {"img_h": 32, "img_w": 128}, "ab", 32, 128, 3, metrics={"em": 0.9})
    assert ModelMeta.from_dict(json.loads(json.dumps(meta.to_dict()))) == meta
    with pytest.raises(ValueError, match="lacks"):
        ModelMeta.from_dict({"arch": "x"})


def test_discover_and_default_model(tmp_path, sharp_models):
    import shutil

    from models.engine import default_model_name, discover_models

    assert discover_models(tmp_path / "none") == {} and default_model_name(tmp_path) is None
    for arch in ("svtr_tiny", "crnn_resnet34"):
        shutil.copytree(sharp_models[arch], tmp_path / arch)
    (tmp_path / "empty").mkdir()
    assert list(discover_models(tmp_path)) == ["crnn_resnet34", "svtr_tiny"]
    assert default_model_name(tmp_path) == "crnn_resnet34"  # no marker, no vanilla_crnn: first found
    (tmp_path / "default").write_text("svtr_tiny\n")
    assert default_model_name(tmp_path) == "svtr_tiny"
    (tmp_path / "default").write_text("missing_model")
    assert default_model_name(tmp_path) == "crnn_resnet34"
