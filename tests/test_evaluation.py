"""models/evaluation.py: one scoring path for train.py (DataLoader batches, torch model) and tools/evaluate.py."""

from __future__ import annotations

import pytest
import torch
from test_infer_evaluate import add_broken_image

from models.checkpoint import load_model
from models.codec import greedy_decode
from models.dataset import read_folder
from models.engine import load_engine
from models.evaluation import loader_batches, prepared_batches, score
from models.preprocess import InputSpec
from tools.evaluate import score_samples
from tools.tiny_dataset import make_dataset


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> list:
    root = add_broken_image(make_dataset(tmp_path_factory.mktemp("eval") / "set", 12, seed=2))
    found, _ = read_folder(root, source="fixture")
    return found


def test_both_batch_sources_give_the_same_inputs_and_report_the_broken_image(samples):
    spec = InputSpec(32, 128, 1)
    prepared_errors: list[str] = []
    loader_errors: list[str] = []
    prepared = list(prepared_batches(samples, spec, 5, prepared_errors))
    loaded = list(loader_batches(samples, spec, 5, 0, loader_errors))
    assert [s.path for chunk, _ in prepared for s in chunk] == [s.path for chunk, _ in loaded for s in chunk]
    assert torch.equal(
        torch.cat([torch.from_numpy(x) for _, x in prepared]), torch.cat([torch.from_numpy(x) for _, x in loaded])
    )
    assert len(prepared_errors) == len(loader_errors) == 1
    assert "broken.png" in prepared_errors[0] and "broken.png" in loader_errors[0]


def test_training_evaluation_scores_like_tools_evaluate(samples, sharp_models):
    """train.py's way (torch model over DataLoader batches) and tools/evaluate.py's (engine) give the same rows."""
    loaded = load_model(sharp_models["vanilla_crnn"] / "best.pt")

    def predict(inputs):
        with torch.no_grad():
            return greedy_decode(loaded.model(torch.from_numpy(inputs)).numpy(), loaded.charset)

    errors: list[str] = []
    rows = score(predict, loader_batches(samples, loaded.spec, 8, 0, errors))
    expected, expected_errors = score_samples(load_engine(sharp_models["vanilla_crnn"], "torch"), samples, batch=8)
    assert [(r.filename, r.label, r.pred, r.source, r.type, r.answer) for r in rows] == [
        (r.filename, r.label, r.pred, r.source, r.type, r.answer) for r in expected
    ]
    assert [r.confidence for r in rows] == pytest.approx([r.confidence for r in expected], abs=1e-5)
    assert len(rows) == len(samples) - 1 and len(errors) == len(expected_errors) == 1
