"""The supervisor's decisions, replayed with a fake clock and fake children: no processes,
no sleeping. (The real thing, with real processes, is in test_supervisor_*.py.)"""

from __future__ import annotations

import signal
from datetime import datetime, timedelta, timezone

import pytest

from djctl.config import ConfigError, load_settings
from djctl.daemon import render
from djctl.daemon.manager import Manager, Policy, SpawnRequest
from djctl.daemon.render import ProcessInfo, State

T0 = datetime(2026, 11, 22, 10, 4, 5, tzinfo=timezone.utc)


class FakeChild:
    def __init__(self, pid: int, request: SpawnRequest) -> None:
        self.pid = pid
        self.request = request
        self.signals: list[int] = []

    def signal(self, sig: int) -> None:
        self.signals.append(sig)


class World:
    """A Manager wired to a clock the test moves and children the test ends."""

    def __init__(self, types=None, policy=Policy(stable_after=10, backoff=1, backoff_max=8,
                                                   up_after=1, grace_period=5)) -> None:
        self.now = 0.0
        self.next_pid = 100
        self.children: dict[int, FakeChild] = {}
        self.events: list[tuple[str, str]] = []
        self.fail_spawn = False
        self.manager = Manager(types or {"worker": "djctl work"}, self.spawn,
                               lambda proc, msg: self.events.append((proc, msg)),
                               policy, clock=lambda: self.now,
                               wall=lambda: T0 + timedelta(seconds=self.now))

    def spawn(self, request: SpawnRequest) -> FakeChild:
        if self.fail_spawn:
            raise FileNotFoundError(2, "No such file or directory")
        self.next_pid += 1
        child = self.children[self.next_pid] = FakeChild(self.next_pid, request)
        return child

    def advance(self, seconds: float) -> float | None:
        self.now += seconds
        return self.manager.tick()

    def exit(self, name: str, code: int) -> None:
        pid = self.pid(name)
        del self.children[pid]
        self.manager.exited(pid, code)
        self.manager.tick()

    def pid(self, name: str) -> int:
        return next(p.pid for p in self.manager.processes() if p.name == name)

    def states(self) -> dict[str, str]:
        return {p.name: p.state.value for p in self.manager.processes()}

    def said(self, proc: str) -> list[str]:
        return [m for p, m in self.events if p == proc]


def test_scale_starts_processes_that_come_up_after_up_after_or_at_first_output():
    w = World()
    w.manager.scale({"worker": 2})
    assert w.states() == {"worker.1": "starting", "worker.2": "starting"}
    w.manager.output(w.pid("worker.2"))
    assert w.states() == {"worker.1": "starting", "worker.2": "up"}
    assert w.advance(0.5) == pytest.approx(0.5)
    w.advance(0.5)
    assert w.states() == {"worker.1": "up", "worker.2": "up"}
    assert w.manager.settled
    assert w.said("worker.1") == ["Starting process with command `djctl work`",
                                  "State changed from starting to up"]
    assert [c.request.name for c in w.children.values()] == ["worker.1", "worker.2"]


def test_scale_down_stops_the_highest_gracefully_then_kills_after_the_grace_period():
    w = World()
    w.manager.scale({"worker": 3})
    w.advance(1)
    w.manager.scale({"worker": 1})
    for name in ("worker.2", "worker.3"):
        assert w.children[w.pid(name)].signals == [signal.SIGTERM]
    assert w.children[w.pid("worker.1")].signals == []
    w.exit("worker.2", -signal.SIGTERM)
    assert w.said("worker.2")[-4:] == ["Stopping all processes with SIGTERM", "State changed from up to stopping",
                                       "Process exited with status 143", "State changed from stopping to down"]
    assert w.advance(4.9) == pytest.approx(0.1)
    w.advance(0.1)
    assert w.children[w.pid("worker.3")].signals == [signal.SIGTERM, signal.SIGKILL]
    assert "Stopping remaining processes with SIGKILL" in w.said("worker.3")
    w.exit("worker.3", -signal.SIGKILL)
    assert w.states() == {"worker.1": "up"}


def test_a_process_that_ran_a_while_is_restarted_at_once():
    w = World()
    w.manager.scale({"worker": 1})
    first = w.pid("worker.1")
    w.advance(30)
    w.exit("worker.1", 1)
    assert w.states() == {"worker.1": "starting"}
    assert w.pid("worker.1") != first
    assert w.said("worker.1")[-4:] == ["Process exited with status 1", "State changed from up to crashed",
                                       "State changed from crashed to starting",
                                       "Starting process with command `djctl work`"]


def test_quick_crashes_back_off_doubling_up_to_the_maximum_and_show_crashed():
    w = World()
    w.manager.scale({"worker": 1})
    delays = []
    for _ in range(6):
        w.exit("worker.1", 1)
        assert w.states() == {"worker.1": "crashed"}
        delay = w.manager.tick()
        delays.append(delay)
        w.advance(delay)
        assert w.states() == {"worker.1": "starting"}
    assert delays == [1, 2, 4, 8, 8, 8]
    assert w.manager.settled is False
    w.exit("worker.1", 1)
    assert w.manager.settled  # crashed counts as settled: `up` need not wait for it


def test_a_stable_run_resets_the_backoff():
    w = World()
    w.manager.scale({"worker": 1})
    for _ in range(3):
        w.exit("worker.1", 1)
        w.advance(w.manager.tick())
    w.advance(11)
    w.exit("worker.1", 1)
    assert w.states() == {"worker.1": "starting"}


def test_restart_goes_one_by_one_and_waits_for_each_to_be_up():
    w = World()
    w.manager.scale({"worker": 2})
    w.advance(1)
    old = {n: w.pid(n) for n in ("worker.1", "worker.2")}
    assert w.manager.restart("worker") == ["worker.1", "worker.2"]
    w.manager.tick()
    assert w.children[old["worker.1"]].signals == [signal.SIGTERM]
    assert w.children[old["worker.2"]].signals == []
    w.exit("worker.1", 0)
    assert w.manager.restarting == ["worker.1", "worker.2"]
    assert w.children[old["worker.2"]].signals == []
    w.advance(1)  # the new worker.1 is up: now worker.2
    assert w.children[old["worker.2"]].signals == [signal.SIGTERM]
    w.exit("worker.2", 0)
    w.advance(1)
    assert w.manager.restarting == []
    assert w.states() == {"worker.1": "up", "worker.2": "up"}
    assert set(old.values()).isdisjoint(w.pid(n) for n in old)


def test_restart_of_an_unknown_target_is_refused():
    w = World()
    w.manager.scale({"worker": 1})
    with pytest.raises(ValueError, match="no process 'worker.7' to restart"):
        w.manager.restart("worker.7")


def test_stop_all_terminates_everything_and_is_done_when_all_exited():
    w = World()
    w.manager.scale({"worker": 2})
    w.exit("worker.2", 1)  # crashed, waiting to restart: nothing to stop
    w.manager.stop_all()
    assert w.states() == {"worker.1": "stopping"}
    assert not w.manager.done
    w.exit("worker.1", 0)
    assert w.manager.done
    assert w.advance(100) is None
    assert w.children == {}


def test_scale_while_stopping_starts_nothing():
    w = World()
    w.manager.scale({"worker": 1})
    w.manager.stop_all()
    w.manager.scale({"worker": 3})
    assert w.states() == {"worker.1": "stopping"}


def test_scale_back_up_while_a_process_is_stopping_restarts_it_after_exit():
    w = World()
    w.manager.scale({"worker": 2})
    w.advance(1)
    w.manager.scale({"worker": 1})
    w.manager.scale({"worker": 2})
    w.exit("worker.2", 0)
    assert w.states() == {"worker.1": "up", "worker.2": "starting"}


def test_a_command_that_cannot_start_is_crashed_and_retried_later():
    w = World()
    w.fail_spawn = True
    w.manager.scale({"worker": 1})
    assert w.states() == {"worker.1": "crashed"}
    assert "Could not start process: No such file or directory" in w.said("worker.1")
    w.fail_spawn = False
    w.advance(w.manager.tick())
    assert w.states() == {"worker.1": "starting"}


def test_types_keep_procfile_order_and_unknown_types_are_refused():
    w = World(types={"worker": "djctl work", "mail": "djctl work --queues mail"})
    w.manager.scale({"mail": 1, "worker": 1})
    assert [p.name for p in w.manager.processes()] == ["worker.1", "mail.1"]
    with pytest.raises(ValueError):
        w.manager.scale({"web": 1})


def test_policy_from_env(tmp_path):
    env = {"DJ_RESTART_BACKOFF": "0.5", "DJ_UP_AFTER": "0", "DJ_GRACE_PERIOD": "3"}
    p = Policy.from_settings(load_settings(env=env, cwd=tmp_path))
    assert (p.backoff, p.up_after, p.grace_period, p.stable_after) == (0.5, 0.0, 3, 10.0)
    with pytest.raises(ConfigError, match="DJ_RESTART_BACKOFF_MAX"):
        load_settings(env={"DJ_RESTART_BACKOFF_MAX": "soon"}, cwd=tmp_path)


# -- what the user reads -------------------------------------------------------------------

def info(name, state, seconds_ago, now):
    return ProcessInfo(name, name.split(".")[0], 1, State(state), now - timedelta(seconds=seconds_ago), "djctl work")


def test_ps_text_is_herokus():
    now = T0 + timedelta(minutes=5)
    procs = [info("worker.2", "crashed", 20, now), info("worker.1", "up", 185, now)]
    assert render.ps_text(procs, {"worker": "djctl work", "mail": "x"}, now) == (
        "=== worker: djctl work (2)\n"
        "worker.1: up 2026/11/22 10:06:00 +0000 (~ 3m ago)\n"
        "worker.2: crashed 2026/11/22 10:08:45 +0000 (~ 20s ago)"
    )


def test_scale_message_is_herokus():
    assert render.scale_message(["worker"], {"worker": 2, "mail": 1}) == (
        "Scaling worker processes... done, now running worker at 2."
    )
    assert render.scale_message(["worker", "mail"], {"worker": 2, "mail": 1}) == (
        "Scaling worker, mail processes... done, now running worker at 2, mail at 1."
    )


def test_process_info_round_trips_through_json():
    p = info("worker.1", "up", 3, T0)
    assert ProcessInfo.from_dict(p.as_dict()) == p
