"""The Manager's part of issue 12, replayed with a fake clock: a formation is steady only
once each process has stayed up a while (point 7), and a re-read Procfile changes what
runs next (point 6)."""

from __future__ import annotations

from djctl.daemon.manager import Manager, Policy, SpawnRequest
from djctl.daemon.model import State

POLICY = Policy(stable_after=10, backoff=1, backoff_max=8, up_after=5, grace_period=5, up_check=1.5)


class Child:
    def __init__(self, pid: int, request: SpawnRequest) -> None:
        self.pid, self.request, self.signals = pid, request, []

    def signal(self, sig: int) -> None:
        self.signals.append(sig)


class World:
    """A Manager on a clock the test moves, with children the test ends."""

    def __init__(self, types=None, policy=POLICY) -> None:
        self.now = 0.0
        self.children: dict[int, Child] = {}
        self.manager = Manager(types or {"worker": "djctl work"}, self.spawn, lambda proc, msg: None,
                               policy, clock=lambda: self.now)

    def spawn(self, request: SpawnRequest) -> Child:
        pid = 100 + len(self.children) + 1
        self.children[pid] = Child(pid, request)
        return self.children[pid]

    def pid(self, name: str) -> int:
        return next(p.pid for p in self.manager.processes() if p.name == name)

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.manager.tick()

    def exit(self, name: str, code: int) -> None:
        pid = self.pid(name)
        self.manager.exited(pid, code)
        self.manager.tick()


def test_steady_waits_until_each_process_has_stayed_up_since_it_came_up():
    world = World(policy=POLICY)
    world.manager.scale({"worker": 1})
    world.advance(3)  # a slow interpreter: its first line comes late
    world.manager.output(world.pid("worker.1"))
    assert world.manager.settled and not world.manager.steady
    assert world.manager.tick() == 1.5
    world.exit("worker.1", 2)
    assert world.manager.steady
    assert [p.state for p in world.manager.processes()] == [State.CRASHED]


def test_steady_once_up_long_enough():
    world = World(policy=POLICY)
    world.manager.scale({"worker": 1})
    world.manager.output(world.pid("worker.1"))
    world.advance(1.4)
    assert not world.manager.steady
    world.advance(0.1)
    assert world.manager.steady


def test_retype_runs_new_commands_and_stops_types_no_longer_named():
    world = World(types={"worker": "old", "clock": "tick"}, policy=POLICY)
    world.manager.scale({"worker": 1, "clock": 1})
    world.manager.retype({"worker": "new", "mail": "send"})
    assert world.manager.formation == {"worker": 1, "mail": 0}
    clock = world.children[world.pid("clock.1")]
    assert clock.signals, "the clock is asked to stop"
    world.manager.restart("worker")
    world.manager.tick()
    world.exit("worker.1", 0)
    assert world.children[world.pid("worker.1")].request.command == "new"
    world.exit("clock.1", 0)
    assert [p.name for p in world.manager.processes()] == ["worker.1"]


def test_a_process_restarted_after_a_quick_exit_still_counts_as_crashed():
    world = World(policy=Policy(stable_after=10, backoff=0.1, backoff_max=1, up_after=5, grace_period=5,
                                up_check=1.5))
    world.manager.scale({"worker": 1})
    world.manager.output(world.pid("worker.1"))
    world.exit("worker.1", 2)
    world.advance(0.2)  # restarted after its backoff, starting again
    assert [p.state for p in world.manager.processes()] == [State.STARTING]
    assert world.manager.steady
    assert world.manager.bounced() == ["worker.1"]


def test_a_slow_starter_that_exits_soon_after_its_first_line_bounced():
    """Slower to start than ``stable_after``: restarted at once, never backed off, yet
    it did not stay up."""
    world = World(policy=Policy(stable_after=2, backoff=0.1, backoff_max=1, up_after=10, grace_period=5,
                                up_check=1.5))
    world.manager.scale({"worker": 1})
    world.advance(3)
    world.manager.output(world.pid("worker.1"))
    world.advance(0.5)
    world.exit("worker.1", 2)
    assert [p.state for p in world.manager.processes()] == [State.STARTING]
    assert world.manager.steady and world.manager.bounced() == ["worker.1"]
