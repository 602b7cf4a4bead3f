"""`djctl bench` measures the database without touching the application's jobs."""

import re
import subprocess

import djctl
from tests import jobs
from tests.support.commands import djctl_cmd
from tests.support.rows import count


def test_bench_reports_three_rates_and_leaves_the_queue_as_it_was(db_url, djctl_env, tmp_path):
    mine = djctl.enqueue(jobs.Touch(str(tmp_path / "out"), "mine"), queue="mail")
    before = count(db_url)
    done = subprocess.run(djctl_cmd("bench", "--jobs", "300"), env=djctl_env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    rates = re.findall(r"^(enqueue, one by one|enqueue_many|work off, one worker) +([\d,]+) jobs/s$",
                       done.stdout, re.M)
    assert [name for name, _ in rates] == ["enqueue, one by one", "enqueue_many", "work off, one worker"]
    assert all(int(rate.replace(",", "")) > 0 for _, rate in rates)
    assert count(db_url) == before and count(db_url, "id = :i AND locked_at IS NULL", i=mine) == 1
    assert not (tmp_path / "out").exists(), "the application's job did not run"
