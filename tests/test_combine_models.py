"""tools/combine_models.py: two models and a gate in one ONNX file that gives, per image, one member's logits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.engine import OnnxEngine
from models.preprocess import prepare_batch
from tools import combine_models as cm

ROOT = Path(__file__).resolve().parents[1]
A = ROOT / "checkpoints" / "vanilla_crnn_int8" / "model.onnx"
B = ROOT / "checkpoints" / "vanilla_crnn" / "model.onnx"  # same input and charset, different weights
pytestmark = pytest.mark.skipif(not (A.is_file() and B.is_file()), reason="shipped models absent")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    from tools.tiny_dataset import make_dataset

    folder = make_dataset(tmp_path_factory.mktemp("combine"), 24, seed=3)
    paths = sorted((folder / "images").glob("*.png"))
    return prepare_batch(paths, OnnxEngine(A).spec).inputs


def combined_engine(tmp_path, weights, threshold) -> OnnxEngine:
    import onnx

    eq_class = 1 + OnnxEngine(A).charset.symbols.index("=")
    model = cm.combine_onnx(A, B, np.asarray(weights, dtype=np.float64), threshold, eq_class)
    meta = [e for e in onnx.load(str(A)).metadata_props if e.key == "captcha_ocr"][0]
    entry = model.metadata_props.add()
    entry.key, entry.value = meta.key, meta.value
    onnx.save(model, str(tmp_path / "model.onnx"))
    return OnnxEngine(tmp_path / "model.onnx")


def member_logits(inputs):
    return OnnxEngine(A).logits(inputs), OnnxEngine(B).logits(inputs)


def test_a_sure_bias_takes_member_b_without_a_and_a_negative_one_takes_a(tmp_path, inputs):
    logits_a, logits_b = member_logits(inputs)
    always_b = combined_engine(tmp_path, [0, 0, 0, 0, 0, 0, 0, 100.0], 0.0)
    np.testing.assert_allclose(always_b.logits(inputs), logits_b, atol=1e-5)
    (tmp_path / "a").mkdir()
    always_a = combined_engine(tmp_path / "a", [0, 0, 0, 0, 0, 0, 0, -100.0], 0.0)
    np.testing.assert_allclose(always_a.logits(inputs), logits_a, atol=1e-5)


def test_the_graph_picks_per_image_as_the_numpy_gate_does(tmp_path, inputs):
    logits_a, logits_b = member_logits(inputs)
    eq_class = 1 + OnnxEngine(A).charset.symbols.index("=")
    features = cm.feature_matrix(*cm.gate_features(logits_a, eq_class), *cm.gate_features(logits_b, eq_class))
    weights = np.array([0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 0.0])  # b where its path is the more probable
    scores = np.sort(features @ weights)
    gaps = np.diff(scores)[len(scores) // 4 : 3 * len(scores) // 4]  # a threshold far from every image's score
    middle = len(scores) // 4 + int(gaps.argmax())
    threshold = float(scores[middle] + scores[middle + 1]) / 2
    scores = features @ weights
    pick_b = scores > threshold
    assert 0 < pick_b.sum() < len(pick_b)
    engine = combined_engine(tmp_path, weights, threshold)
    expected = np.where(pick_b[:, None, None], logits_b, logits_a)
    np.testing.assert_allclose(engine.logits(inputs), expected, atol=1e-5)
    for i in range(4):  # one image at a time, as the service sends them
        np.testing.assert_allclose(engine.logits(inputs[i : i + 1]), expected[i : i + 1], atol=1e-5)


def test_member_a_is_skipped_only_where_no_output_of_a_could_change_the_choice():
    rng = np.random.default_rng(1)
    path_a, eq_a = np.linspace(-200, 0, 2001)[:, None], np.array([0.0, 0.3, 1.0])[None, :]
    for _ in range(20):
        w = rng.normal(size=8)
        w[0] = -abs(w[0]) - abs(w[2])  # an unsure a must not lower the score without bound
        a_part = (w[0] + w[2]) * path_a + w[3] * np.maximum(path_a, cm.FLOOR) + w[5] * eq_a
        least = cm.least_a_part(w)
        assert a_part.min() >= least - 1e-9 and a_part.min() <= least + 1e-6
    rising = np.array([1.0, 0, 0, 0, 0, 0, 0, 0])  # here it does: a always runs
    assert cm.least_a_part(rising) == -np.inf


def test_fit_gate_separates_what_it_can():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 7))
    features = np.concatenate([x, np.ones((400, 1))], axis=1)
    b_right = x[:, 2] > 0.3
    weights = cm.fit_gate(features, b_right)
    assert ((features @ weights > 0) == b_right).mean() > 0.95


def test_refuses_members_of_different_input_and_an_existing_output(tmp_path):
    other = ROOT / "checkpoints" / "crnn_resnet34"
    if not (other / "model.onnx").is_file():
        pytest.skip("crnn_resnet34 absent")
    with pytest.raises(SystemExit, match="differ in input size or charset"):
        cm.main(["--a", str(A.parent), "--b", str(other), "--fit", str(tmp_path), "--out", str(tmp_path / "new")])
    with pytest.raises(SystemExit, match="exists"):
        cm.main(["--a", str(A.parent), "--b", str(B.parent), "--fit", str(tmp_path), "--out", str(tmp_path)])
