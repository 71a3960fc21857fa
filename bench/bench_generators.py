"""Images per second of the Java runners, with 1 and 2 threads (median of 3 runs).

    python bench/bench_generators.py [--count 3000] [--repeats 3] [--threads 1,2] [--json out.json]

Each run is one ``smart`` command into a temporary folder (PNG encoding and file writes included). Two rates are
printed: end to end (wall clock of the whole command, JVM start included) and in-run (the runner's own final
progress line, which leaves the JVM start out). Targets on a 2-core machine: EasyCaptcha PNG and ctext >= 1,000/s,
Ruoyi >= 600/s, wild >= 500/s. The CPU column (user + system time of the whole command per image, JIT and JVM start included) does
not depend on what else runs on the machine; the rates do.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from models.paths import ROOT

EASY_PNG = "spec:1,spec_num:1,spec_char:1,spec_upper:1,spec_lower:1,spec_numupper:1,spec_numlower:1,cn:2,arith:1"
CASES = {  # name -> (runner, extra arguments)
    "easy_png": ("EasyCaptchaRunner", ["--mix", EASY_PNG]),
    "easy_gif": ("EasyCaptchaRunner", ["--mix", "gif:1,gif_numupper:1,gif_numlower:1,cn_gif:1"]),
    "ctext": ("KaptchaTextRunner", []),
    "ruoyi": ("RuoyiRunner", []),
    "hutool": ("HutoolRunner", []),
    "kaptcha": ("KaptchaRunner", []),
    "wild": ("WildRunner", []),
}
RATE = re.compile(r"([0-9.]+) img/s")


def run_once(runner: str, extra: list[str], count: int, threads: int, args) -> tuple[float, float, float]:
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        command = ["java", "-cp", str(args.java_build), runner, "smart", str(Path(tmp) / "out"), str(count)]
        command += [*extra, "--threads", str(threads), "--seed", "1"]
        if args.font_dir:
            command += ["--font-dir", str(args.font_dir)]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    rates = RATE.findall(done.stderr)
    return count / wall, float(rates[-1]) if rates else float("nan"), 1000 * cpu / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=3000, help="images per run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per setting; the median is printed")
    parser.add_argument("--threads", default="1,2", help="thread counts to try")
    parser.add_argument("--cases", default=",".join(CASES), help="which of " + ",".join(CASES))
    parser.add_argument("--java-build", type=Path, default=ROOT / "build" / "java", help="compiled runners")
    parser.add_argument("--font-dir", type=Path, default=None, help="EasyCaptcha builtin TTFs")
    parser.add_argument("--tmp", type=Path, default=None, help="where the images go (default: the system temp dir)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    if not (args.java_build / "EasyCaptchaRunner.class").exists():
        sys.exit(f"compiled runners not found in {args.java_build}: run `make java` first")
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'case':10} {'threads':>7} {'end-to-end img/s':>17} {'in-run img/s':>13} {'CPU ms/img':>11}")
    rows = []
    for name in args.cases.split(","):
        runner, extra = CASES[name]
        for threads in map(int, args.threads.split(",")):
            results = [run_once(runner, extra, args.count, threads, args) for _ in range(args.repeats)]
            wall = statistics.median(r[0] for r in results)
            inner = statistics.median(r[1] for r in results)
            cpu = statistics.median(r[2] for r in results)
            print(f"{name:10} {threads:7d} {wall:17.0f} {inner:13.0f} {cpu:11.2f}", flush=True)
            rows.append(
                {
                    "case": name,
                    "threads": threads,
                    "count": args.count,
                    "end_to_end": [r[0] for r in results],
                    "in_run": [r[1] for r in results],
                    "cpu_ms": [r[2] for r in results],
                }
            )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"rows": rows, "repeats": args.repeats}, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
