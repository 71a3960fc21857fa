import re
import subprocess
from pathlib import Path

from helpers import ROOT

REQUIRED = ["setup", "test", "lint", "ready", "train", "eval", "data", "bench", "clean"]


def test_make_alone_prints_every_public_target():
    out = subprocess.run(["make", "-s", "-C", str(ROOT)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    listed = {line.split()[0] for line in out.stdout.splitlines()[1:] if line.strip()}
    missing = [t for t in REQUIRED if not any(t in item for item in listed)]
    assert not missing, f"targets missing from `make` help: {missing}\n{out.stdout}"


def test_ci_entry_calls_make_test():
    script = (ROOT / ".ci" / "run").read_text()
    assert "make test" in script
    assert (ROOT / ".ci" / "run").stat().st_mode & 0o111, ".ci/run must be executable"


def test_serving_tier_has_no_torch():
    lines = (ROOT / "requirements.txt").read_text().lower().splitlines()
    packages = [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]
    assert packages and not [p for p in packages if "torch" in p]
    train = (ROOT / "requirements-train.txt").read_text()
    assert "-r requirements.txt" in train and "torch" in train


def requirement_lines(name: str) -> list[str]:
    """The package lines of a requirements file (comments and ``-r`` includes left out)."""
    lines = [line.split("#")[0].strip() for line in (ROOT / name).read_text().splitlines()]
    return [line for line in lines if line and not line.startswith("-r")]


def test_pyproject_mirrors_the_three_requirement_tiers():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert project["dependencies"] == requirement_lines("requirements.txt")
    assert extras["train"] == requirement_lines("requirements-train.txt")
    assert extras["dev"] == ["captcha-ocr[train]", *requirement_lines("requirements-dev.txt")]


def python_files() -> list:
    skip = {".venv", "build", "dataset", ".git"}
    this = Path(__file__).resolve()  # it names what it looks for
    return [p for p in ROOT.rglob("*.py") if not skip & set(p.relative_to(ROOT).parts) and p.resolve() != this]


def test_no_file_touches_sys_path_and_bench_never_imports_tests():
    """`models` imports from everywhere through make setup (the repository root in a .pth file), not through path hacks."""
    touching = [str(p.relative_to(ROOT)) for p in python_files() if "sys.path" in p.read_text(encoding="utf-8")]
    assert touching == []
    test_modules = {p.stem for p in (ROOT / "tests").glob("*.py")} | {"tests"}
    for path in (ROOT / "bench").glob("*.py"):
        imports = re.findall(r"^\s*(?:from|import) ([\w.]+)", path.read_text(encoding="utf-8"), flags=re.M)
        assert not {name.split(".")[0] for name in imports} & test_modules, path


def test_one_module_knows_the_folders(monkeypatch, tmp_path):
    from models import paths

    monkeypatch.setenv("CAPTCHA_REALDEV", str(tmp_path / "real"))
    monkeypatch.setenv("CAPTCHA_CHECKPOINTS", str(tmp_path / "ckpt"))
    monkeypatch.setenv("CAPTCHA_DATASET", str(tmp_path / "data"))
    assert paths.realdev_dir() == tmp_path / "real"
    assert paths.checkpoints_dir() == tmp_path / "ckpt"
    assert paths.dataset_dir() == tmp_path / "data"
    monkeypatch.delenv("CAPTCHA_REALDEV")
    assert paths.realdev_dir() == ROOT.parent / "shared" / "realdev"
    hard_coded = [p.name for p in python_files() if '"shared" / "realdev"' in p.read_text(encoding="utf-8")]
    assert hard_coded == ["paths.py"], hard_coded
