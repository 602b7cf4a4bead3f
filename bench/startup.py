"""Start-up of the commands an operator types, against a bare interpreter, in one run.

    python -m bench.startup [--repeat 15]

Each command runs in a fresh empty directory with no supervisor running (the common
case at 3 a.m.: `djctl ps` to see what is up). Reported: the median and best wall time
of the whole process, and the ratio of the median to a bare `python -c pass`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMANDS = [
    ["--help"],
    ["ps"],
    ["scale"],
    ["down"],
    ["restart"],
    ["logs", "-n", "20"],
    ["stats"],
]


def timed(argv: list[str], cwd: Path, env: dict[str, str], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJ_", "DATABASE_URL"))}
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        bare = statistics.median(timed([sys.executable, "-c", "pass"], cwd, env, args.repeat))
        print(f"{'command':<22}{'median ms':>10}{'best ms':>9}{'x bare':>8}")
        print(f"{'python -c pass':<22}{bare * 1000:>10.0f}{'':>9}{1.0:>8.1f}")
        for command in COMMANDS:
            times = timed([sys.executable, "-m", "djctl", *command], cwd, env, args.repeat)
            median = statistics.median(times)
            name = "djctl " + " ".join(command)
            print(f"{name:<22}{median * 1000:>10.0f}{min(times) * 1000:>9.0f}{median / bare:>8.1f}")


if __name__ == "__main__":
    main()
