"""Start-up of the commands an operator types, against a bare interpreter, in one run.

    python -m bench.startup [--repeat 15]

Each command runs in a fresh empty directory with no supervisor running (the common
case at 3 a.m.: `djctl ps` to see what is up). Reported: the median and best wall time
of the whole process, the ratio of the median to a bare `python -c pass` (issue 20's
target: 4x at most), and from one more run under `python -X importtime` how many
modules the command imported and whether SQLAlchemy was among them.

`djctl top`'s first paint (target: 1 s at most) is timed in a real terminal (tmux,
120x40) on a SQLite database holding a few jobs: from starting the process to the
screen showing the Queues panel with the default queue's row in it.
"""

from __future__ import annotations

import argparse
import os
import shutil
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


def imports(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, bool]:
    """How many modules ``argv`` imported, and whether SQLAlchemy was one."""
    done = subprocess.run([argv[0], "-X", "importtime", *argv[1:]], cwd=cwd, env=env, capture_output=True,
                          text=True, check=False)
    names = [line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")]
    return len(names) - 1, any(n.split(".")[0] == "sqlalchemy" for n in names)


def top_first_paint(cwd: Path, env: dict[str, str], repeat: int) -> list[float] | None:
    """Seconds from starting ``djctl top`` to its Queues panel showing the default queue."""
    if shutil.which("tmux") is None:
        return None
    url = f"sqlite:///{cwd / 'top.sqlite3'}"
    subprocess.run([sys.executable, "-c", "import djctl, bench.jobs; djctl.configure(database_url=%r); "
                    "djctl.enqueue_many([bench.jobs.Noop() for _ in range(3)])" % url],
                   cwd=cwd, env={**env, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}, check=True)
    times = []
    for i in range(repeat):
        socket = str(cwd / f"tmux{i}.sock")  # a server of its own each time: none still shutting down
        started = time.perf_counter()
        subprocess.run(["tmux", "-S", socket, "new-session", "-d", "-s", "top", "-x", "120", "-y", "40",
                        f"{sys.executable} -m djctl --database-url {url} top"], cwd=cwd, env=env, check=True)
        try:
            deadline = started + 30
            while time.perf_counter() < deadline:
                screen = subprocess.run(["tmux", "-S", socket, "capture-pane", "-p", "-t", "top"],
                                        capture_output=True, text=True, check=False).stdout
                if "Queues" in screen and "default" in screen:
                    times.append(time.perf_counter() - started)
                    break
                time.sleep(0.005)
        finally:
            subprocess.run(["tmux", "-S", socket, "kill-server"], check=False, stderr=subprocess.DEVNULL)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJ_", "DATABASE_URL"))}
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        bare = statistics.median(timed([sys.executable, "-c", "pass"], cwd, env, args.repeat))
        print(f"{'command':<22}{'median ms':>10}{'best ms':>9}{'x bare':>8}{'modules':>9}  sqlalchemy")
        print(f"{'python -c pass':<22}{bare * 1000:>10.0f}{'':>9}{1.0:>8.1f}")
        for command in COMMANDS:
            argv = [sys.executable, "-m", "djctl", *command]
            times = timed(argv, cwd, env, args.repeat)
            median = statistics.median(times)
            count, sqlalchemy = imports(argv, cwd, env)
            name = "djctl " + " ".join(command)
            print(f"{name:<22}{median * 1000:>10.0f}{min(times) * 1000:>9.0f}{median / bare:>8.1f}{count:>9}"
                  f"  {'yes' if sqlalchemy else 'no'}")
        paints = top_first_paint(cwd, env, max(3, args.repeat // 3))
        if paints:
            print(f"{'djctl top first paint':<22}{statistics.median(paints) * 1000:>10.0f}"
                  f"{min(paints) * 1000:>9.0f}{statistics.median(paints) / bare:>8.1f}")
        else:
            print("djctl top first paint: not measured (no tmux, or the screen never showed the queue)")


if __name__ == "__main__":
    main()
