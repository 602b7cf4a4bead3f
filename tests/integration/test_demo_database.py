"""Issue 12 point 13: ``djctl --database-url URL demo`` leaves URL as it found it: the
application's jobs stay, the sample jobs go."""

from __future__ import annotations

import subprocess

import djctl
from tests.jobs import Touch
from tests.support.commands import djctl_cmd
from tests.support.rows import count


def test_a_demo_pointed_at_a_database_deletes_its_sample_jobs_and_nothing_else(db_url, djctl_env, tmp_path):
    djctl.enqueue(Touch(str(tmp_path / "never"), "app's own"))
    env = {**djctl_env, "DJ_STATE_DIR": str(tmp_path / ".djctl")}
    env.pop("DJ_APP")
    r = subprocess.run(djctl_cmd("--database-url", db_url, "demo", "--jobs", "20", "--workers", "1"),
                       cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=240, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    last = r.stdout.splitlines()[-1]
    assert last.startswith("Deleted the ") and last.endswith(" sample jobs left in " + last.rsplit(" in ", 1)[1])
    assert count(db_url, "handler LIKE '%djctl.demo:%'") == 0
    assert count(db_url) == 1, "the application's job is still there"
    assert count(db_url, "failed_at IS NULL AND attempts = 0") == 1, "and untouched"
    assert not (tmp_path / ".djctl" / "demo" / "demo.sqlite3").exists()
