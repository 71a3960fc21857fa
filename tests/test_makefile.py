import subprocess

from conftest import ROOT

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
