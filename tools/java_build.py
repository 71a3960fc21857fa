"""Compile the Java captcha runners (JDK only). The one place that calls javac: ``make java``, tools/make_data.py
and the tests use it.

    python3 tools/java_build.py [build/java]

Standard library only, so it runs before any virtual environment exists.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

JAVA_SRC = Path(__file__).resolve().parent / "java_captcha"
NO_JAVAC = "javac not found: install a JDK (Debian: apt-get install default-jdk-headless; macOS: brew install openjdk)"


def compile_runners(build: Path, force: bool = False) -> Path:
    """javac every runner into ``build`` unless each class is newer than every source; returns ``build``."""
    build = Path(build)
    sources = sorted(JAVA_SRC.glob("*.java"))
    classes = [build / f"{s.stem}.class" for s in sources]
    newest_source = max(s.stat().st_mtime for s in sources)
    if not force and all(c.exists() and c.stat().st_mtime >= newest_source for c in classes):
        return build
    if shutil.which("javac") is None:
        raise SystemExit(NO_JAVAC)
    build.mkdir(parents=True, exist_ok=True)
    print(f"javac -> {build}", file=sys.stderr)
    subprocess.run(["javac", "-encoding", "UTF-8", "-d", str(build), *map(str, sources)], check=True)
    return build


if __name__ == "__main__":
    compile_runners(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("build/java"))
