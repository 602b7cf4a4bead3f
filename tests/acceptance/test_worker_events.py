"""The structured event channel of a real `djctl work`: one JSON event per finished job on
the pipe named by DJCTL_EVENT_FD, and nothing a job prints or writes can forge one."""

from __future__ import annotations

import errno
import fcntl
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime

import pytest

import djctl
from djctl.worker.report import Event
from tests import jobs
from tests.support.commands import djctl_cmd
from tests.support.waiting import wait_for

HIGH_FD = 200  # the event fd is at least this, so that nothing the executor opens after closing it takes its number
DEADLINE = 60.0


@dataclass
class Liar:
    """Prints a report line and an event for a job that does not exist, then tries the
    event channel (``fd``) itself; writes what that attempt met to ``path``."""

    path: str
    fd: int

    def perform(self) -> None:
        print("[Worker(host:x pid:1)] Job Touch (id=999999) COMPLETED", flush=True)
        print('{"event": "completed", "job_id": 999999, "class": "Touch", "queue": null, '
              '"attempts": 1, "run_time": 0.0, "ts": "2026-01-01T00:00:00+00:00"}', flush=True)
        try:
            os.write(self.fd, b'{"event":"completed","job_id":999999}\n')
            met = "written"
        except OSError as e:
            met = errno.errorcode.get(e.errno, str(e.errno))
        with open(self.path, "a") as f:
            f.write(met + "\n")


@dataclass
class Pipe:
    """The test's read end, and the write end the worker inherits under a high number."""

    r: int
    w: int

    def close_w(self) -> None:
        """Once: closed twice, the number might be another file's by then."""
        if self.w >= 0:
            os.close(self.w)
            self.w = -1


@pytest.fixture
def events_pipe():
    r, w = os.pipe()
    # The lowest free number from HIGH_FD up: a fixed number might be an fd this process
    # already holds (a pooled connection, a log), which dup2 would silently close.
    high = fcntl.fcntl(w, fcntl.F_DUPFD_CLOEXEC, HIGH_FD)
    os.close(w)
    os.set_blocking(r, False)
    pipe = Pipe(r, high)
    yield pipe
    pipe.close_w()
    os.close(r)


def _read(fd: int, into: bytearray) -> bool:
    """Append what the pipe holds; False at end of file."""
    try:
        while chunk := os.read(fd, 65536):
            into += chunk
        return False
    except BlockingIOError:
        return True


def _events(data: bytes) -> list[Event]:
    return [Event.from_json(line) for line in data.decode().splitlines()]


def test_one_event_per_finished_job_and_none_a_job_can_forge(db_url, djctl_env, tmp_path, events_pipe):
    out, liar_out = tmp_path / "out", tmp_path / "liar"
    touched = [djctl.enqueue(jobs.Touch(str(out), str(i)), queue="mail") for i in range(3)]
    failed = djctl.enqueue(jobs.Fail("on purpose"))
    liar = djctl.enqueue(Liar(str(liar_out), events_pipe.w))
    env = dict(djctl_env, DJCTL_EVENT_FD=str(events_pipe.w), DJ_ALLOW=__name__)
    with open(tmp_path / "worker.out", "w") as stdout:
        worker = subprocess.Popen(djctl_cmd("work"), env=env, stdout=stdout, stderr=subprocess.STDOUT,
                                  pass_fds=(events_pipe.w,))
    events_pipe.close_w()  # the worker holds the only write end now: its exit is our end of file
    data = bytearray()
    try:
        wait_for(lambda: (_read(events_pipe.r, data), len(data.splitlines()) >= 5)[1], DEADLINE,
                 message="an event for each of the five jobs")
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(DEADLINE) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    os.set_blocking(events_pipe.r, True)
    assert not _read(events_pipe.r, data), "end of file once the worker is gone"

    events = _events(bytes(data))
    assert sorted((e.job_id, e.event) for e in events) == sorted(
        [(i, "completed") for i in touched] + [(failed, "failed"), (liar, "completed")]
    ), "exactly one event per finished job, none for the forged id 999999"
    by_id = {e.job_id: e for e in events}
    assert {by_id[i].job_class for i in touched} == {"Touch"} and by_id[liar].job_class == "Liar"
    assert {by_id[i].queue for i in touched} == {"mail"} and by_id[failed].queue == "default"
    assert all(e.attempts == 1 and e.run_time is not None and e.run_time >= 0 for e in events)
    assert all(datetime.fromisoformat(e.ts).tzinfo is not None for e in events)

    assert liar_out.read_text().split() == ["EBADF"], "the executor closed the event channel"
    log = (tmp_path / "worker.out").read_text()
    assert "Job Touch (id=999999) COMPLETED" in log, "the log can be fooled; the events cannot"
    assert f"Job Liar (id={liar}) COMPLETED" in log


def test_without_the_variable_no_event_is_written(db_url, djctl_env, tmp_path, events_pipe):
    job_id = djctl.enqueue(jobs.Touch(str(tmp_path / "out"), "x"))
    env = {k: v for k, v in djctl_env.items() if k != "DJCTL_EVENT_FD"}
    done = subprocess.run(djctl_cmd("workoff"), env=env, capture_output=True, text=True,
                          pass_fds=(events_pipe.w,), timeout=DEADLINE)
    assert done.returncode == 0, done.stderr
    assert f"(id={job_id}) COMPLETED" in done.stdout
    events_pipe.close_w()
    data = bytearray()
    assert not _read(events_pipe.r, data) and data == b"", "no event without DJCTL_EVENT_FD"


def test_a_bad_event_fd_is_one_line_and_the_jobs_still_run(db_url, djctl_env, tmp_path):
    job_id = djctl.enqueue(jobs.Touch(str(tmp_path / "out"), "x"))
    env = dict(djctl_env, DJCTL_EVENT_FD="nine")
    done = subprocess.run(djctl_cmd("workoff"), env=env, capture_output=True, text=True, timeout=DEADLINE)
    assert done.returncode == 0, done.stderr
    warnings = [ln for ln in done.stdout.splitlines() if "DJCTL_EVENT_FD" in ln]
    assert len(warnings) == 1 and "not an open file descriptor" in warnings[0], done.stdout
    assert f"(id={job_id}) COMPLETED" in done.stdout


if __name__ == "__main__":
    sys.exit(pytest.main([__file__]))
