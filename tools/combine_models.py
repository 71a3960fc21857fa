"""Combine two models of one input and charset into one ONNX file that reads each image with the member a gate picks.

    python tools/combine_models.py --a checkpoints/vanilla_crnn_int8 --b runs/vanilla_crnn_plus_int8 \\
        --fit dataset/ens/test --out checkpoints/vanilla_crnn_duo_int8

Member b reads every image first; where its own output is sure enough that nothing member a could say would
change the choice (every image of the batch), a does not run, else a reads it too and the gate picks. The gate is
a logistic score on what the two outputs say of themselves: each member's greedy-path log-probability (the sum
over frames of the log of the largest class probability, floored at -20 once more) and its largest probability of
``=`` (arithmetic). Above the threshold the image takes member b's output, else member a's. The combined model's
``logits`` are the chosen member's, so every reader of a model folder (``infer.py``, the servers,
``tools/evaluate.py``) opens it as it is.

The gate is fitted on ``--fit``, a labelled folder of our own generated captchas (never the real ones): logistic
regression on the images where one member reads right and the other wrong. The threshold is the lowest of a grid
at which no target row of the seed families (models.report.TARGETS: EasyCaptcha, GIF, ctext, Ruoyi) on that
folder reads more than ``--keep`` points below member a alone; the table printed shows every row for a, b and the
combination. Nothing is written when the members differ in input or charset.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np

SEED_SOURCES = ("easy", "easy_gif", "ctext", "ruoyi")
FLOOR = -20.0  # path log-probabilities below this count as this (one outlier must not swamp the score)
THRESHOLDS = np.arange(0.0, 6.01, 0.25)


def gate_features(logits: np.ndarray, eq_class: int) -> tuple[np.ndarray, np.ndarray]:
    """Per image: the greedy path's log-probability and the largest probability of ``=`` over frames."""
    from models.codec import softmax

    probs = softmax(np.asarray(logits, dtype=np.float32))
    path = np.log(probs.max(axis=2) + 1e-12).sum(axis=1)
    return path, probs[:, :, eq_class].max(axis=1)


def feature_matrix(path_a, eq_a, path_b, eq_b) -> np.ndarray:
    """The gate's inputs, one row per image (the last column is the bias)."""
    columns = [path_a, path_b, path_a - path_b, np.maximum(path_a, FLOOR), np.maximum(path_b, FLOOR), eq_a, eq_b]
    return np.stack([*columns, np.ones_like(path_a)], axis=1)


def fit_gate(features: np.ndarray, b_right: np.ndarray, steps: int = 5000, l2: float = 1e-3) -> np.ndarray:
    """Weights of ``score = features @ w`` (standardized inside, folded back): > 0 where b is the better guess."""
    mean, std = features.mean(axis=0), features.std(axis=0) + 1e-6
    mean[-1], std[-1] = 0.0, 1.0
    z = (features - mean) / std
    w = np.zeros(z.shape[1])
    target = b_right.astype(np.float64)
    for _ in range(steps):
        p = 1 / (1 + np.exp(-(z @ w)))
        w -= 0.1 * (z.T @ (p - target) / len(target) + l2 * w)
    folded = w / std
    folded[-1] = w[-1] - float((w[:-1] * mean[:-1] / std[:-1]).sum())
    return folded


class GraphBuilder:
    """ONNX nodes appended in order, with scalar and axis constants made on demand."""

    def __init__(self, prefix: str) -> None:
        from onnx import helper

        self.helper, self.prefix, self.nodes = helper, prefix, []

    def op(self, op_type: str, inputs: list[str], name: str, **attrs) -> str:
        out = f"{self.prefix}{name}"
        self.nodes.append(self.helper.make_node(op_type, inputs, [out], **attrs))
        return out

    def const(self, name: str, values, dtype: int = 1, shape: list[int] | None = None) -> str:
        values = list(np.atleast_1d(values))
        tensor = self.helper.make_tensor(f"{self.prefix}{name}", dtype, [] if shape is None else shape, values)
        self.nodes.append(self.helper.make_node("Constant", [], [tensor.name], value=tensor))
        return tensor.name

    def features(self, logits: str, eq_class: int) -> tuple[str, str]:
        """A member's greedy-path log-probability and largest ``=`` probability, as :func:`gate_features`."""
        probs = self.op("Softmax", [logits], "probs", axis=-1)
        best = self.op("ReduceMax", [probs, self.const("ax2", [2], 7, [1])], "best", keepdims=0)
        log_best = self.op("Log", [self.op("Add", [best, self.const("eps", 1e-12)], "best_eps")], "log_best")
        path = self.op("ReduceSum", [log_best, self.const("ax1", [1], 7, [1])], "path", keepdims=0)
        eq = self.op("Gather", [probs, self.const("eq", [eq_class], 7, [1])], "eq_probs", axis=2)
        return path, self.op("ReduceMax", [eq, self.const("ax12", [1, 2], 7, [2])], "eq_max", keepdims=0)

    def linear(self, terms: list[tuple[str, float]], bias: float, name: str) -> str:
        """``bias + sum(weight * value)`` over ``terms``."""
        total = self.const(f"{name}_bias", bias)
        for i, (value, weight) in enumerate(terms):
            term = self.op("Mul", [value, self.const(f"{name}_w{i}", weight)], f"{name}_term{i}")
            total = self.op("Add", [total, term], f"{name}_sum{i}")
        return total


def least_a_part(weights: np.ndarray) -> float:
    """The lowest the terms of member a can add to the score, over every path log-probability <= 0 and ``=``
    probability in [0, 1]: where member b's terms alone clear the threshold by that much, a need not run."""
    w = weights
    slope_below_floor = w[0] + w[2]  # d score / d path_a where path_a < FLOOR
    if slope_below_floor > 0:
        return -np.inf  # a very unsure a lowers the score without bound: always run a
    corners = [0.0, (w[0] + w[2] + w[3]) * FLOOR]  # path_a = 0 and path_a = FLOOR; beyond FLOOR the score only rises
    return float(min(corners) + min(0.0, w[5]))


def combine_onnx(path_a: Path, path_b: Path, weights: np.ndarray, threshold: float, eq_class: int):
    """One ``onnx.ModelProto``: input ``images``, output ``logits`` (the chosen member's logits).

    Member b runs first. Where b's terms of the score clear the threshold for any output of a (every image of the
    batch), b's logits are the answer and a does not run (an ``If``); else a runs and the gate picks per image.
    """
    import onnx
    from onnx import compose, helper

    members = [compose.add_prefix(onnx.load(str(path)), prefix) for path, prefix in ((path_a, "a/"), (path_b, "b/"))]
    graph_a, graph_b = members[0].graph, members[1].graph
    outer = GraphBuilder("g/")
    outer.nodes += [helper.make_node("Identity", ["images"], ["b/images"]), *graph_b.node]
    path_b_lp, eq_b = outer.features("b/logits", eq_class)
    floored_b = outer.op("Max", [path_b_lp, outer.const("floor", FLOOR)], "floored_b")
    w = [float(v) for v in weights]
    b_terms = [(path_b_lp, w[1] - w[2]), (floored_b, w[4]), (eq_b, w[6])]
    b_alone = outer.linear(b_terms, w[7] + least_a_part(weights), "b_alone")
    b_sure = outer.op("Greater", [b_alone, outer.const("threshold", threshold)], "b_sure")
    every = outer.op("ReduceMin", [outer.op("Cast", [b_sure], "b_sure_int", to=6)], "every_b_sure", keepdims=0)
    skip_a = outer.op("Cast", [every], "skip_a", to=9)

    then_graph = helper.make_graph(
        [helper.make_node("Identity", ["b/logits"], ["then_logits"])], "b_alone", [],
        [helper.make_tensor_value_info("then_logits", 1, None)],
    )  # fmt: skip
    inner = GraphBuilder("ga/")
    inner.nodes += [helper.make_node("Identity", ["images"], ["a/images"]), *graph_a.node]
    path_a_lp, eq_a = inner.features("a/logits", eq_class)
    floored_a = inner.op("Max", [path_a_lp, inner.const("floor", FLOOR)], "floored_a")
    score = inner.linear([(path_a_lp, w[0] + w[2]), (path_b_lp, w[1] - w[2]), (floored_a, w[3]), (floored_b, w[4]),
                          (eq_a, w[5]), (eq_b, w[6])], w[7], "score")  # fmt: skip
    pick_b = inner.op("Greater", [score, inner.const("threshold", threshold)], "pick_b")
    pick_b3 = inner.op("Unsqueeze", [pick_b, inner.const("ax12u", [1, 2], 7, [2])], "pick_b3")
    inner.nodes.append(helper.make_node("Where", [pick_b3, "b/logits", "a/logits"], ["else_logits"]))
    else_graph = helper.make_graph(
        inner.nodes, "gated", [], [helper.make_tensor_value_info("else_logits", 1, None)], list(graph_a.initializer)
    )
    outer.nodes.append(helper.make_node("If", [skip_a], ["logits"], then_branch=then_graph, else_branch=else_graph))

    images = onnx.ValueInfoProto()
    images.CopyFrom(graph_a.input[0])  # "a/images" after add_prefix: the member's input, under its own name
    images.name = "images"
    output = helper.make_tensor_value_info("logits", 1, ["batch", None, None])
    graph = helper.make_graph(outer.nodes, "combined", [images], [output], list(graph_b.initializer))
    opsets = {(o.domain, o.version) for m in members for o in m.opset_import}
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in sorted(opsets)])
    model.ir_version = members[0].ir_version
    onnx.checker.check_model(model)
    return model


def read_rows(engine_a, engine_b, folder: Path, eq_class: int):
    """Scored rows of each member on ``folder`` and the gate's feature matrix."""
    from bench.common import folder_logits
    from models.evaluation import score

    logits_a, samples = folder_logits(engine_a, folder)
    logits_b, _ = folder_logits(engine_b, folder)
    rows_a, rows_b = (score(engine.decode, [(samples, logits)]) for engine, logits in ((engine_a, logits_a), (engine_b, logits_b)))  # fmt: skip
    features = feature_matrix(*gate_features(logits_a, eq_class), *gate_features(logits_b, eq_class))
    return rows_a, rows_b, features


def targets(rows) -> dict[str, tuple[int, float]]:
    from models.report import target_table

    return {t["name"]: (t["n"], 100 * t["value"]) for t in target_table(rows)}


def choose_threshold(rows_a, rows_b, scores, keep: float) -> tuple[float, dict]:
    """The lowest threshold at which no seed-family row drops more than ``keep`` points below member a."""
    base = targets(rows_a)
    seed_rows = {name for name in base if name.split(":")[0].split(",")[0] in SEED_SOURCES}
    for threshold in THRESHOLDS:
        chosen = [b if s > threshold else a for a, b, s in zip(rows_a, rows_b, scores, strict=True)]
        table = targets(chosen)
        if all(table[name][1] >= base[name][1] - keep for name in seed_rows):
            return float(threshold), table
    raise SystemExit(f"error: no threshold up to {THRESHOLDS[-1]} keeps the seed rows within {keep} points of a")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--a", type=Path, required=True, help="member kept where the gate is unsure (model folder)")
    parser.add_argument("--b", type=Path, required=True, help="member taken where the gate says it reads better")
    parser.add_argument("--fit", type=Path, required=True, help="labelled folder of our own captchas to fit the gate")
    parser.add_argument("--out", type=Path, required=True, help="new model folder (must not exist)")
    parser.add_argument("--keep", type=float, default=0.5, help="seed rows may read at most this many points below a")
    args = parser.parse_args(argv)

    from models.engine import OnnxEngine, resolve_model_file
    from models.meta import set_onnx_meta
    from models.report import read_like_realdev_targets

    if args.out.exists():
        raise SystemExit(f"error: {args.out} exists; pick another --out or remove it")
    paths = [resolve_model_file(p, "onnx") for p in (args.a, args.b)]
    engine_a, engine_b = (OnnxEngine(p) for p in paths)
    if engine_a.spec != engine_b.spec or engine_a.charset.symbols != engine_b.charset.symbols:
        raise SystemExit("error: the two models differ in input size or charset; only such pairs combine")
    if "=" not in engine_a.charset.symbols:
        raise SystemExit("error: the charset has no '=': the gate reads arithmetic by it")

    eq_class = 1 + engine_a.charset.symbols.index("=")
    rows_a, rows_b, features = read_rows(engine_a, engine_b, args.fit, eq_class)
    right_a = np.array([read_like_realdev_targets(r) for r in rows_a])
    right_b = np.array([read_like_realdev_targets(r) for r in rows_b])
    differ = right_a != right_b
    if differ.sum() < 20:
        raise SystemExit(f"error: the members disagree on {differ.sum()} images of {args.fit}: too few to fit a gate")
    weights = fit_gate(features[differ], right_b[differ])
    threshold, table = choose_threshold(rows_a, rows_b, features @ weights, args.keep)
    table_a, table_b = targets(rows_a), targets(rows_b)
    print(f"gate fitted on {differ.sum()} of {len(rows_a)} images where one member reads right; threshold {threshold}")
    print("| row | n | a | b | combined |\n|---|---:|---:|---:|---:|")
    for name, (n, value) in table.items():
        print(f"| {name} | {n} | {table_a[name][1]:.1f}% | {table_b[name][1]:.1f}% | {value:.1f}% |")

    model = combine_onnx(paths[0], paths[1], weights, threshold, eq_class)
    record = engine_a.meta.to_dict()
    record["metrics"] = {
        **{k: v for k, v in record.get("metrics", {}).items() if k == "quantization"},
        "combined": {"a": args.a.name, "b": args.b.name, "fit": str(args.fit), "threshold": threshold,
                     "weights": [round(float(w), 6) for w in weights], "fit_table": table},
    }  # fmt: skip
    set_onnx_meta(model, record)
    import onnx

    args.out.parent.mkdir(parents=True, exist_ok=True)
    # hidden (not a model yet), and made by mkdir so it gets the permissions of any folder here (mkdtemp's are 0700)
    staging = args.out.parent / f".{args.out.name}.{os.getpid()}"
    staging.mkdir()
    try:
        onnx.save(model, str(staging / "model.onnx"))
        (staging / "combined.json").write_text(json.dumps(record["metrics"]["combined"], indent=2) + "\n")
        staging.rename(args.out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    print(f"wrote {args.out}/model.onnx")
    return 0


if __name__ == "__main__":
    sys.exit(main())
