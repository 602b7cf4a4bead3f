"""The supervisor's Prometheus metrics, through the ``prometheus_client`` library.

Three sources, never a human log line:
- job outcomes: the JSON events the supervisor's processes report on their event pipes
  (:mod:`djctl.worker.report`): completions and failures by job class and queue, run
  time and enqueue-to-start delay (histograms), labelled by host;
- the supervisor's own state: processes by type and state and restarts by type (what
  the loop publishes), its database round-trip time and last successful heartbeat;
- the queue, read from the database at each scrape (:mod:`djctl.queue.stats`): jobs by
  queue, priority and state and the oldest ready job's age per queue — the same numbers
  from any supervisor, so they carry no host label.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine

from djctl import clock
from djctl.daemon.health import DatabaseProbe, LoopState
from djctl.daemon.logs import events as job_events
from djctl.daemon.model import State
from djctl.errors import one_line
from djctl.queue import stats

STATES = ("ready", "scheduled", "running", "failed")
RUN_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400)
WAIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)


@dataclass(frozen=True)
class QueueSample:
    """One reading of the queue: (queue, priority, state) -> jobs, queue -> the oldest
    ready job's age in seconds, and how long the reading took."""

    jobs: dict[tuple[str, int, str], int]
    latency: dict[str, float]
    seconds: float


def read_queue(engine: Engine, default_queue: str) -> QueueSample:
    """Count the queue now (one short read transaction; jobs stored with no queue are
    the default queue's)."""
    began = time.perf_counter()
    now = clock.utcnow()
    jobs: dict[tuple[str, int, str], int] = {}
    latency: dict[str, float] = {}
    with engine.connect().execution_options(sqlite_read=True) as conn:
        depth = stats.queue_depth(conn, now)
        ready = [(d.queue, d.priority) for d in depth if d.ready]
        oldest = stats.oldest_ready(conn, now, ready) if ready else {}
    for d in depth:
        name = d.queue or default_queue
        latency.setdefault(name, 0.0)
        for state in STATES:
            key = (name, d.priority, state)
            jobs[key] = jobs.get(key, 0) + getattr(d, state)
    for (queue, _), run_at in oldest.items():
        label = queue or default_queue
        latency[label] = max(latency[label], (now - run_at).total_seconds())
    return QueueSample(jobs, latency, time.perf_counter() - began)


class QueueCollector(Collector):
    """The queue's numbers at scrape time. A reading younger than ``reuse`` seconds serves
    the scrape as it is (so that frequent scrapes, or several scrapers, count the table at
    most once per ``reuse``); otherwise the scrape waits at most ``timeout`` seconds for a
    new one, and scrapes that arrive during a reading share it. A reading that fails or is
    late leaves ``djctl_queue_up`` at 0 and the last numbers read."""

    def __init__(self, read: Callable[[], QueueSample], timeout: float = 5.0, reuse: float = 0.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.read = read
        self.timeout = timeout
        self.reuse = reuse
        self.clock = clock
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="djctl-queue-read")
        self._lock = threading.Lock()
        self._pending: Future | None = None
        self._last: QueueSample | None = None
        self._read_at: float | None = None

    def sample(self) -> tuple[QueueSample | None, str | None]:
        """The freshest reading and None, or the last one and why it is not fresh."""
        with self._lock:
            if self._last is not None and self._read_at is not None and self.clock() - self._read_at < self.reuse:
                return self._last, None
            if self._pending is None or self._pending.done():
                self._pending = self._pool.submit(self._read)
            pending = self._pending
        try:
            return pending.result(self.timeout), None
        except FutureTimeout:
            return self._last, f"no answer within {self.timeout:g}s"
        except Exception as e:  # noqa: BLE001 - the database failed: said by djctl_queue_up
            return self._last, one_line(e)

    def _read(self) -> QueueSample:
        sample = self.read()
        with self._lock:
            self._last, self._read_at = sample, self.clock()
        return sample

    def collect(self) -> Iterator[Metric]:
        sample, error = self.sample()
        up = GaugeMetricFamily("djctl_queue_up", "1 when this scrape read the queue from the database, else 0")
        up.add_metric([], 0 if error else 1)
        yield up
        jobs = GaugeMetricFamily("djctl_jobs", "Jobs in the table by queue, priority and state "
                                 "(ready, scheduled, running, failed)", labels=["queue", "priority", "state"])
        latency = GaugeMetricFamily("djctl_queue_latency_seconds",
                                    "Age of the oldest ready job per queue (0 when none waits)", labels=["queue"])
        took = GaugeMetricFamily("djctl_queue_read_seconds", "How long the last reading of the queue took")
        if sample is not None:
            for (queue, priority, state), n in sorted(sample.jobs.items()):
                jobs.add_metric([queue, str(priority), state], n)
            for queue, age in sorted(sample.latency.items()):
                latency.add_metric([queue], age)
            took.add_metric([], sample.seconds)
        yield jobs
        yield latency
        yield took

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class SupervisorCollector(Collector):
    """The local supervisor's processes, its database round trip and its heartbeat."""

    def __init__(self, host: str, state: Callable[[], LoopState | None], probe: DatabaseProbe | None,
                 last_heartbeat: Callable[[], float | None]) -> None:
        self.host = host
        self.state = state
        self.probe = probe
        self.last_heartbeat = last_heartbeat

    def collect(self) -> Iterator[Metric]:
        processes = GaugeMetricFamily("djctl_processes", "Supervised processes by type and state",
                                      labels=["host", "type", "state"])
        state = self.state()
        if state is not None:
            types = sorted({p.type for p in state.processes} | set(state.formation))
            for type_name in types:
                for s in State:
                    n = sum(1 for p in state.processes if p.type == type_name and p.state is s)
                    processes.add_metric([self.host, type_name, s.value], n)
        yield processes
        if self.probe is not None:
            up = GaugeMetricFamily("djctl_database_up", "1 when the database answered the supervisor's "
                                   "last ping in time", labels=["host"])
            up.add_metric([self.host], 1 if self.probe.answering().ok else 0)
            yield up
            if self.probe.round_trip is not None:
                rtt = GaugeMetricFamily("djctl_database_round_trip_seconds",
                                        "The supervisor's last database round trip (SELECT 1)", labels=["host"])
                rtt.add_metric([self.host], self.probe.round_trip)
                yield rtt
        beat = self.last_heartbeat()
        if beat is not None:
            g = GaugeMetricFamily("djctl_heartbeat_timestamp_seconds",
                                  "Unix time of the supervisor's last successful heartbeat", labels=["host"])
            g.add_metric([self.host], beat)
            yield g


class Metrics:
    """One supervisor's registry: the job counters fed by :meth:`job_event`, restarts fed
    by :meth:`restarted`, and the collectors that read the rest at scrape time."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.registry = CollectorRegistry(auto_describe=False)
        labels = ["host", "job_class", "queue"]
        self.completed = Counter("djctl_jobs_completed", "Jobs that ran to their end", labels,
                                 registry=self.registry)
        self.failed = Counter("djctl_jobs_failed", "Failed attempts; permanent=\"true\" when the job "
                              "is kept as failed", [*labels, "permanent"], registry=self.registry)
        self.run_time = Histogram("djctl_job_run_seconds", "How long jobs ran", labels,
                                  buckets=RUN_BUCKETS, registry=self.registry)
        self.wait = Histogram("djctl_job_wait_seconds", "Enqueue-to-start delay: from when a job was due "
                              "(its run_at) to its start", ["host", "queue"], buckets=WAIT_BUCKETS,
                              registry=self.registry)
        self.restarts = Counter("djctl_process_restarts", "Processes restarted after exiting unexpectedly",
                                ["host", "type"], registry=self.registry)
        self._queue: QueueCollector | None = None

    def add(self, collector: Collector) -> None:
        self.registry.register(collector)
        if isinstance(collector, QueueCollector):
            self._queue = collector

    def job_event(self, raw: str, default_queue: str) -> None:
        """Count one line a process wrote on its event pipe; what is no event is ignored."""
        event = job_events.parse(raw)
        if event is None:
            return
        job_class = str(event.get("class") or "?")
        queue = str(event.get("queue") or default_queue)
        if event["event"] == job_events.COMPLETED:
            self.completed.labels(self.host, job_class, queue).inc()
        else:
            permanent = "true" if event["event"] == job_events.FAILED_PERMANENTLY else "false"
            self.failed.labels(self.host, job_class, queue, permanent).inc()
        run_time = _seconds(event.get("run_time"))
        if run_time is not None:
            self.run_time.labels(self.host, job_class, queue).observe(run_time)
        waited = _seconds(event.get("waited"))
        if waited is not None:
            self.wait.labels(self.host, queue).observe(waited)

    def restarted(self, type_name: str) -> None:
        self.restarts.labels(self.host, type_name).inc()

    def close(self) -> None:
        if self._queue is not None:
            self._queue.close()


def _seconds(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if value >= 0 else None
