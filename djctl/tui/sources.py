"""Everything the console reads and does: the database, the supervisor, the log.

Nothing here touches Textual, so the console's data and actions are tested and
benchmarked without a terminal. The app calls :class:`Source` from thread workers only:
every method may block on the database or the control socket.

One refresh (:meth:`DatabaseSource.snapshot`) is a handful of queries whose cost does
not grow with the number of jobs except for the per-queue counts, which read one index
(``stats.queue_depth``): the failed list and the oldest ready job are read per
(queue, priority) group from the indexes' ranges.

The supervisor is reached only through :class:`SupervisorLink` (over
:mod:`djctl.daemon.client`); with no supervisor running, the processes come read-only from the
``djctl_processes`` table that every supervisor keeps up to date.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
from sqlalchemy import Connection, func, select, union_all

from djctl import api, config
from djctl.clock import now as utcnow  # the console's clock: timezone-aware UTC
from djctl.daemon import client
from djctl.queue import admin, lookup, stats
from djctl.queue import engines as store
from djctl.queue.schema import delayed_jobs, djctl_processes
from djctl.tui import controls
from djctl.tui.controls import ActionError
from djctl.tui.model import Clock, JobFilter, ProcessRow, QueueRow, Snapshot, Supervision
from djctl.worker import identity

FAILED_LIMIT = 100


class SupervisorLink:
    """The console's one door to the supervisor: :class:`djctl.daemon.client.SupervisorClient`
    for ``state_dir``, its replies and refusals in the console's terms."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)
        self.client = client.SupervisorClient(self.state_dir)

    def ps(self) -> tuple[dict | None, str]:
        """The supervisor's ``ps`` reply, or None and why there is none."""
        try:
            return self.client.request("ps", timeout=5.0), ""
        except client.NotRunning:
            return None, "no supervisor running"
        except (client.ControlError, OSError, ValueError) as e:
            return None, f"supervisor: {e}"

    def scale(self, process_type: str, delta: int) -> dict[str, int]:
        """Scale ``process_type`` by ``delta``; the new formation. ActionError on refusal."""
        sign = "+" if delta >= 0 else "-"
        reply = self._request("scale", args=[f"{process_type}{sign}{abs(delta)}"])
        return dict(reply.get("formation") or {})

    def _request(self, cmd: str, **args: Any) -> dict:
        try:
            return self.client.request(cmd, **args)
        except client.NotRunning:
            raise ActionError("no supervisor running (start one with: djctl up)") from None
        except client.ControlError as e:
            raise ActionError(str(e)) from None
        except (OSError, ValueError) as e:
            raise ActionError(f"the supervisor did not answer: {e}") from None


def log_path(settings: config.Settings) -> Path:
    """Where the supervisor of ``settings`` writes its log (``djctl logs`` reads the same)."""
    return client.SupervisorClient(settings.state_dir).log_path


def events_path(settings: config.Settings) -> Path:
    """Where the supervisor of ``settings`` writes the job outcomes its processes report."""
    return client.SupervisorClient(settings.state_dir).events_path


class DatabaseSource:
    """The live :class:`Source`: the configured database and the local supervisor."""

    def __init__(self, settings: config.Settings, clock: Clock = utcnow,
                 supervisor: SupervisorLink | None = None, host: str | None = None) -> None:
        self.settings = settings
        self.clock = clock
        self.supervisor = supervisor or SupervisorLink(settings.state_dir)
        self.host = host or identity.hostname()
        self.description = store.describe(store.normalize_url(settings.database_url))
        self.log_path: Path | None = log_path(settings)
        self.events_path: Path | None = events_path(settings)
        self._engine = api.engine(settings.database_url)
        self._psutil: dict[int, psutil.Process] = {}

    # -- reading ------------------------------------------------------------------

    def snapshot(self, flt: JobFilter) -> Snapshot:
        """One refresh: processes, queue depth, failed jobs (at most FAILED_LIMIT)."""
        taken = self.clock()
        now = api.utc_naive(taken)
        ps, why = self.supervisor.ps()
        with self._read() as conn:
            depth = [d for d in stats.queue_depth(conn, now) if flt.wants(d.queue)]
            ready = [(d.queue, d.priority) for d in depth if d.ready]
            oldest = stats.oldest_ready(conn, now, ready)
            failing = [(d.queue, d.priority) for d in depth if d.failed]
            failed = stats.failed_jobs(conn, failing, flt.failed, FAILED_LIMIT)
            if flt.job_class or flt.text:
                total = stats.count_failed(conn, failing, flt.failed)
            else:
                total = sum(d.failed for d in depth)
            processes = self._processes(conn, ps, now)
            left = sum(n for g, n in stats.left_unrun(conn).items() if flt.wants(g[0]))
            paused = frozenset(stats.paused_queues(conn))
        queues = tuple(QueueRow(d.queue, d.priority, d.ready, d.scheduled, d.running, d.failed,
                                oldest.get((d.queue, d.priority)), waiting=d.waiting, waiting_on=d.waiting_on)
                       for d in depth)
        # A paused queue with no job left still shows, so that it can be resumed here.
        shown = {stats.queue_label(q.queue) for q in queues}
        queues += tuple(QueueRow(q, 0, 0, 0, 0, 0) for q in sorted(paused - shown - {stats.EVERY_QUEUE})
                        if flt.wants(q))
        if ps is None:
            supervision = Supervision(False, note=why)
        else:
            supervision = Supervision(True, dict(ps.get("formation") or {}), dict(ps.get("types") or {}))
        return Snapshot(taken, supervision, tuple(processes), queues, tuple(failed), total, left, paused)

    def traceback(self, job_id: int) -> str | None:
        """The full last_error of job ``job_id`` (None when it has none or is gone)."""
        with self._read() as conn:
            return conn.scalar(select(delayed_jobs.c.last_error).where(delayed_jobs.c.id == job_id))

    def find_jobs(self, flt: JobFilter, limit: int) -> list[lookup.JobRow]:
        """At most ``limit`` jobs of every state matching ``flt``, as ``djctl jobs`` lists them."""
        search = lookup.Search(flt.queue, tuple(lookup.State), flt.job_class, flt.text, limit)
        with self._read() as conn:
            return lookup.find_jobs(conn, search, api.utc_naive(self.clock()))

    def job(self, job_id: int) -> lookup.JobDetail | None:
        """Job ``job_id`` whole, as ``djctl show`` prints it (None: it is gone)."""
        with self._read() as conn:
            return lookup.show_job(conn, job_id, api.utc_naive(self.clock()))

    def _read(self) -> Connection:
        return self._engine.connect().execution_options(sqlite_read=True)

    def _processes(self, conn: Connection, ps: dict | None, now: datetime) -> list[ProcessRow]:
        found: list[ProcessRow] = []
        if ps is not None:
            for p in ps.get("processes") or []:
                # As ps shows it: an up process since it started, others since their state began.
                since = p.get("started_at") if p["state"] == "up" and p.get("started_at") else p.get("since")
                found.append(ProcessRow(str(p["name"]), str(p["type"]), self.host, p.get("pid"), str(p["state"]),
                                     _parse_time(since), str(p.get("command") or ""),
                                     progress=progress_text(p.get("progress"))))
            named = {p.type for p in found}
            for t in ps.get("types") or {}:
                if t not in named:
                    found.append(ProcessRow(t, t, self.host, None, "scaled to 0", command=ps["types"][t]))
        timeout = timedelta(seconds=self.settings.heartbeat_timeout)
        for r in self._registry_rows(conn):
            local = r.host == self.host
            if local and ps is not None:
                continue  # the supervisor's own answer is fresher than its last heartbeat
            state = r.state
            if local and (r.pid is None or not identity.pid_alive(r.pid)):
                state = "down"
            stale = not local and r.heartbeat_at is not None and now - r.heartbeat_at > timeout
            found.append(ProcessRow(r.name, r.type, r.host, r.pid, state, r.started_at, r.command or "",
                                 local=local, stale=stale, progress=progress_text(_json(r.progress))))
        jobs = self._current_jobs(conn, [p for p in found if p.pid is not None])
        out = []
        for p in found:
            job = jobs.get((p.host, p.pid)) if p.pid is not None else None
            cpu, mem = self._usage(p.pid) if p.local and p.state not in ("down", "crashed") else (None, None)
            out.append(replace(p, cpu=cpu, memory=mem, job=job[0] if job else None,
                                job_since=job[1] if job else None, job_id=job[2] if job else None))
        # As ``djctl ps`` lists them: this host's types in Procfile order, then every other
        # host's as ``ps --all-hosts`` does (by host and type); by index within a type.
        order = list((ps or {}).get("types") or {})
        out.sort(key=lambda p: (not p.local, p.host, order.index(p.type) if p.type in order else len(order),
                                p.type, _number(p.name)))
        self._psutil = {pid: proc for pid, proc in self._psutil.items() if proc.is_running()}
        return out

    def _registry_rows(self, conn: Connection) -> list[Any]:
        p = djctl_processes.c
        return list(conn.execute(select(p.host, p.pid, p.name, p.type, p.state, p.command, p.started_at,
                                        p.heartbeat_at, p.progress)))

    def _current_jobs(self, conn: Connection,
                      procs: Iterable[ProcessRow]) -> dict[tuple[str, int], tuple[str, datetime, int]]:
        names = {identity.format(p.host, p.pid): (p.host, p.pid) for p in procs if p.pid is not None}
        if not names:
            return {}
        t = delayed_jobs.c
        # The oldest claim of each worker is the job it runs (the others are read ahead).
        parts = [
            select(t.id, t.locked_by, t.locked_at, func.substr(t.handler, 1, 1000).label("handler"))
            .where(t.locked_by == name, t.failed_at.is_(None))
            .order_by(t.locked_at, t.id).limit(1).subquery()
            for name in names
        ]
        rows = conn.execute(union_all(*[select(*p.c) for p in parts]))
        return {names[r.locked_by]: (f"{stats.job_name(r.handler or '')} (id={r.id})", r.locked_at, r.id)
                for r in rows}

    def _usage(self, pid: int | None) -> tuple[float | None, int | None]:
        """CPU percent and RSS of the process that does ``pid``'s work: a worker runs its
        jobs in an executor child, so a process with children is measured by them."""
        if pid is None:
            return None, None
        try:
            proc = self._process(pid)
            doers = [self._process(c.pid) for c in proc.children(recursive=True)] or [proc]
            cpu, rss = 0.0, 0
            for p in doers:
                with p.oneshot():
                    cpu += p.cpu_percent(None)
                    rss += p.memory_info().rss
            return cpu, rss
        except (psutil.Error, OSError):
            self._psutil.pop(pid, None)
            return None, None

    def _process(self, pid: int) -> psutil.Process:
        # Kept between refreshes: cpu_percent measures since the previous call on the same object.
        proc = self._psutil.get(pid)
        if proc is None or not proc.is_running():
            proc = self._psutil[pid] = psutil.Process(pid)
        return proc

    # -- acting -------------------------------------------------------------------

    def scale(self, process_type: str, delta: int) -> str:
        """Scale through the supervisor; the line to show (Heroku's words)."""
        formation = self.supervisor.scale(process_type, delta)
        n = formation.get(process_type, 0)
        return f"Scaling {process_type} processes... done, now running {process_type} at {n}."

    def retry(self, ids: Sequence[int]) -> int:
        """Run these jobs again now, under the retry rule of ``queue.admin``; how many.
        ActionError (nothing changed) when one is refused."""
        outcome = admin.retry(self._engine, ids)
        if outcome.refused:
            raise ActionError(_refused("retried", outcome))
        return len(outcome.done)

    def retry_failed(self, flt: JobFilter) -> int:
        """Run again every failed job matching ``flt``; how many."""
        return len(admin.retry_failed(self._engine, _queue(flt.queue), flt.failed).done)

    def delete(self, ids: Sequence[int]) -> int:
        """Delete these jobs; how many. ActionError (nothing deleted) when a worker is
        running one or one is gone."""
        outcome = admin.delete(self._engine, ids)
        if outcome.refused:
            raise ActionError(_refused("deleted", outcome))
        return len(outcome.done)

    def delete_failed(self, flt: JobFilter) -> int:
        """Delete every failed job matching ``flt``; how many."""
        return len(admin.delete_failed(self._engine, _queue(flt.queue), flt.failed).done)

    def clear_queue(self, queue: str | None) -> int:
        """Delete every job of ``queue`` (None: the default queue), recurring schedules
        included, as ``djctl clear --queue``; how many rows."""
        cleared = admin.clear(self._engine, queue)
        return cleared.jobs + cleared.schedules

    def pause_queue(self, queue: str | None) -> str:
        return controls.pause_queue(self._engine, queue)

    def resume_queue(self, queue: str | None) -> str:
        return controls.resume_queue(self._engine, queue)

    def cancel(self, ids: Sequence[int]) -> int:
        return controls.cancel(self._engine, ids)


def _queue(label: str | None) -> admin.QueueChoice:
    """The queue a filter names: every queue, the default one, or a named one."""
    if label is None:
        return admin.EVERY
    return label


_WHY = {admin.Refusal.UNKNOWN: "it is gone (completed or deleted)",
        admin.Refusal.RUNNING: "a worker is running it",
        admin.Refusal.NOT_FAILED: "it has not failed, so there is nothing to retry"}


def _refused(done: str, outcome: admin.Outcome) -> str:
    return "; ".join(f"job {i} not {done}: {_WHY[r]}" for i, r in sorted(outcome.refused.items()))


def progress_text(progress: Any) -> str | None:
    """``42% resizing``: a job's last ``djctl.progress`` as the supervisor reports it."""
    fraction = progress.get("fraction") if isinstance(progress, Mapping) else None
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction <= 1:
        return None
    message = progress.get("message")
    return f"{float(progress['fraction']):.0%}" + (f" {message}" if isinstance(message, str) and message else "")


def _json(value: str | None) -> Any:
    """``value`` read as JSON (a heartbeat's progress column), None when it is not."""
    try:
        return json.loads(value) if value else None
    except ValueError:
        return None


def _parse_time(value: Any) -> datetime | None:
    """A naive UTC datetime from the supervisor's iso8601 text."""
    if not value:
        return None
    try:
        return api.utc_naive(datetime.fromisoformat(str(value)))
    except ValueError:
        return None


def _number(name: str) -> int:
    tail = name.rpartition(".")[2]
    return int(tail) if tail.isdigit() else 0

