"""Monitoring, wired for one supervisor: the metrics registry, the database probe and the
HTTP endpoint, started and stopped together. The supervisor's loop feeds it what it sees
(:meth:`Monitoring.publish`, :meth:`job_event`, :meth:`restarted`); nothing here ever
calls into the loop."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import disable_created_metrics
from sqlalchemy import Engine, text

from djctl.daemon.exporter import Address, Exporter
from djctl.daemon.health import DatabaseProbe, LoopState
from djctl.daemon.metrics import Metrics, QueueCollector, SupervisorCollector, read_queue

# The *_created series double every counter and histogram and tell a scraper nothing a
# counter reset does not: this process's registries export none.
disable_created_metrics()


class Monitoring:
    """Serves ``/metrics`` and the probes on ``address`` for the supervisor of ``host``.
    ``last_heartbeat()`` gives the Unix time of its last successful heartbeat (or None);
    a reading of the queue serves the scrapes of the next ``queue_reuse`` seconds."""

    def __init__(self, address: Address, engine: Engine, host: str, default_queue: str, types: Iterable[str],
                 last_heartbeat: Callable[[], float | None], queue_reuse: float = 10.0,
                 probe_interval: float = 0.5, probe_stale: float = 1.5) -> None:
        self.default_queue = default_queue
        self.metrics = Metrics(host)
        for type_name in types:
            self.metrics.restarts.labels(host, type_name)  # 0 from the start, so that increase() sees the first
        self._state: LoopState | None = None
        self.probe = DatabaseProbe(lambda: _ping(engine), probe_interval, probe_stale)
        self.metrics.add(QueueCollector(lambda: read_queue(engine, default_queue), reuse=queue_reuse))
        self.metrics.add(SupervisorCollector(host, lambda: self._state, self.probe, last_heartbeat))
        self.exporter = Exporter(address, self.metrics, lambda: self._state, self.probe)

    @property
    def address(self) -> Address:
        """Where it listens (the port chosen, when asked for port 0)."""
        return self.exporter.address

    def start(self) -> None:
        self.probe.start()
        self.exporter.start()

    def close(self) -> None:
        self.exporter.close()
        self.probe.stop()
        self.metrics.close()

    def publish(self, state: LoopState) -> None:
        """What the loop saw on this turn; the probes answer from it."""
        self._state = state

    def job_event(self, raw: str) -> None:
        """One line a process wrote on its event pipe."""
        self.metrics.job_event(raw, self.default_queue)

    def restarted(self, type_name: str) -> None:
        """A process of ``type_name`` exited unexpectedly and will be restarted."""
        self.metrics.restarted(type_name)


def _ping(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
