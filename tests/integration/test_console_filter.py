"""The console's class filter names the job's class or function, never its arguments."""

from __future__ import annotations

import djctl
from djctl import config
from djctl.tui.model import JobFilter
from djctl.tui.sources import DatabaseSource
from djctl.worker.worker import Worker
from tests.jobs import Fail, Touch, add_line


def test_the_class_filter_does_not_match_arguments(db_url, tmp_path):
    djctl.enqueue(Fail("Touch the file first"))              # class Fail, "Touch" in its arguments
    djctl.enqueue(Touch(str(tmp_path / "no" / "such" / "dir"), "Fail"))  # class Touch, "Fail" in its arguments
    djctl.delay(add_line)(str(tmp_path / "missing" / "x"), "Touch")      # a function, "Touch" in its arguments
    assert Worker(max_attempts=1, log=lambda line: None).work_off(num=10) == (0, 3)
    source = DatabaseSource(config.current())

    def names(job_class: str) -> list[str]:
        snap = source.snapshot(JobFilter(job_class=job_class))
        assert snap.failed_total == len(snap.failed)
        return sorted(j.name for j in snap.failed)

    assert names("Touch") == ["Touch"]
    assert names("fail") == ["Fail"]
    assert names("add_line") == ["add_line"]
    assert names("tests.jobs") == ["Fail", "Touch", "add_line"]
    assert names("the file") == []
    assert sorted(j.name for j in source.snapshot(JobFilter(text="Touch")).failed) == ["Fail", "Touch", "add_line"]
