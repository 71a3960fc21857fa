"""`make data` / `make data-small` (tools/make_data.py): every runner's family is in the recipe, data-small asks for
each of them, and a tiny run of the recipe puts every type of the new families into the merged splits."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter

from helpers import ROOT, read_meta, run
from tools.make_data import RECIPES

NEW_FAMILIES = ("hutool", "kaptcha", "wild")


def test_every_runner_is_in_the_recipe():
    runners = {p.stem for p in (ROOT / "tools" / "java_captcha").glob("*Runner.java")}
    assert runners == {runner for runner, _ in RECIPES.values()}


def test_data_small_asks_for_every_family():
    done = subprocess.run(["make", "-n", "data-small"], capture_output=True, text=True, cwd=ROOT, check=True)
    lines = done.stdout.replace("\\\n", " ").splitlines()  # join the recipe's continued lines
    command = next(line for line in lines if "tools/make_data.py" in line)
    for family in RECIPES:
        for split in ("train", "test"):
            count = re.search(rf"--{family}-{split} (\d+)", command)
            assert count and int(count.group(1)) > 0, f"data-small draws no {family} {split} images: {command}"


def test_a_tiny_recipe_holds_every_new_type(classes, tmp_path):
    counts = []
    for family in NEW_FAMILIES:
        counts += [f"--{family}-train", "40", f"--{family}-test", "10"]
    done = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "make_data.py"), "--out", str(tmp_path), "--java-build", str(classes),
         "--threads", "2", "--seed", "9", *counts],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    train = Counter((row["source"], row["type"]) for row in read_meta(tmp_path / "train"))
    test = Counter((row["source"], row["type"]) for row in read_meta(tmp_path / "test"))
    for family in NEW_FAMILIES:
        runner = RECIPES[family][0]
        types = run(classes, runner, "list", fonts=False).stdout.split()
        assert types, runner
        for type_ in types:
            assert train[(family, type_)] > 0, f"{family}/{type_} missing from train: {train}"
        assert sum(n for (source, _), n in test.items() if source == family) > 0
