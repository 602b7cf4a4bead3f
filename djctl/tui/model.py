"""What the console shows and asks for, as plain records: the operator's filter, the rows
of one refresh (processes, queues, the supervisor's state), and :class:`Source`, the
protocol the app reads and acts through. No Textual, no database here."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

from djctl.queue import lookup, stats

Clock = Callable[[], datetime]


@dataclass(frozen=True)
class JobFilter:
    """What the operator narrowed the view to with ``/``: a queue (None: every queue;
    the default queue's name, as configured, the default one), a job class and a free text (substrings,
    any case; empty matches all). Failed-job actions on "all shown" obey it."""

    queue: str | None = None
    job_class: str = ""
    text: str = ""

    def wants(self, queue: str | None) -> bool:
        return self.queue is None or self.queue == stats.queue_label(queue)

    @property
    def failed(self) -> stats.FailedFilter:
        return stats.FailedFilter(job_class=self.job_class, text=self.text)

    def describe(self) -> str:
        """``queue=mail class=Resize text="boom"``, or empty for no filter."""
        parts = []
        if self.queue is not None:
            parts.append(f"queue={self.queue}")
        if self.job_class:
            parts.append(f"class={self.job_class}")
        if self.text:
            parts.append(f'text="{self.text}"')
        return " ".join(parts)


@dataclass(frozen=True)
class QueueRow(stats.Depth):
    """One queue and priority: stats.Depth plus the oldest ready job's run_at."""

    oldest_ready: datetime | None = None


@dataclass(frozen=True)
class ProcessRow:
    """One supervised process on some host. ``pid`` is None for a type scaled to zero;
    ``cpu`` (percent) and ``memory`` (RSS bytes) are known for this host's processes
    only; ``stale`` when its supervisor stopped reporting (heartbeat expired)."""

    name: str
    type: str
    host: str
    pid: int | None
    state: str
    since: datetime | None = None
    command: str = ""
    local: bool = True
    cpu: float | None = None
    memory: int | None = None
    job: str | None = None
    job_since: datetime | None = None
    job_id: int | None = None
    stale: bool = False
    progress: str | None = None
    """The running job's last ``djctl.progress``: ``42% resizing``."""


@dataclass(frozen=True)
class Supervision:
    """What the local supervisor said (``running``) or why it said nothing (``note``)."""

    running: bool
    formation: Mapping[str, int] = field(default_factory=dict)
    types: Mapping[str, str] = field(default_factory=dict)
    note: str = ""


@dataclass(frozen=True)
class Snapshot:
    """Everything one refresh shows. Times are naive UTC, as the database keeps them,
    except ``taken_at`` (aware)."""

    taken_at: datetime
    supervisor: Supervision
    processes: tuple[ProcessRow, ...] = ()
    queues: tuple[QueueRow, ...] = ()
    failed: tuple[stats.FailedJob, ...] = ()
    failed_total: int = 0
    left_unrun: int = 0
    """Waiting jobs that workers with no app configured gave back unrun."""
    paused: frozenset[str] = frozenset()
    """The paused queues' names (``*``: every queue is paused)."""

    def is_paused(self, queue: str | None) -> bool:
        return stats.queue_label(queue) in self.paused or stats.EVERY_QUEUE in self.paused


class Source(Protocol):
    """The console's data and actions. Every method may block: call from workers."""

    clock: Clock
    description: str
    log_path: Path | None
    events_path: Path | None

    def snapshot(self, flt: JobFilter) -> Snapshot: ...
    def traceback(self, job_id: int) -> str | None: ...
    def find_jobs(self, flt: JobFilter, limit: int) -> list[lookup.JobRow]: ...
    def job(self, job_id: int) -> lookup.JobDetail | None: ...
    def scale(self, process_type: str, delta: int) -> str: ...
    def retry(self, ids: Sequence[int]) -> int: ...
    def retry_failed(self, flt: JobFilter) -> int: ...
    def delete(self, ids: Sequence[int]) -> int: ...
    def delete_failed(self, flt: JobFilter) -> int: ...
    def clear_queue(self, queue: str | None) -> int: ...
    def pause_queue(self, queue: str | None) -> str: ...
    def resume_queue(self, queue: str | None) -> str: ...
    def cancel(self, ids: Sequence[int]) -> int: ...
