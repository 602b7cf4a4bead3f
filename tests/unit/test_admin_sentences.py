"""What ``djctl clear`` and the console say after clearing (queue.admin.Cleared): no database."""

from __future__ import annotations

import pytest

from djctl.queue.admin import EVERY, Cleared


@pytest.mark.parametrize(("cleared", "queue", "line"), [
    (Cleared(3, 0), EVERY, "Deleted 3 jobs."),
    (Cleared(1, 0), "mail", "Deleted 1 job from queue mail."),
    (Cleared(2, 1), EVERY, "Deleted 2 jobs and 1 recurring schedule."),
    (Cleared(0, 2), "ops", "Deleted 2 recurring schedules from queue ops."),
    (Cleared(0, 0), EVERY, "Deleted 0 jobs."),
    (Cleared(0, 0), "nosuch", "No job in queue nosuch: nothing deleted."),
    (Cleared(0, 0), None, "No job in queue default: nothing deleted."),
])
def test_the_clear_line_counts_jobs_and_schedules_apart(cleared: Cleared, queue, line: str) -> None:
    assert cleared.sentence(queue) == line
