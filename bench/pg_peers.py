"""The PostgreSQL peers under the same measurements as djctl: pgqueuer and procrastinate.

Each gets its own database and is used the way its documentation shows: pgqueuer's
QueueManager over asyncpg (its fastest driver) on uvloop, batch_size 10, drain mode;
procrastinate's App over its psycopg connector, a worker with wait=False (exit when
caught up), default concurrency 1 and LISTEN/NOTIFY on. Both run an ``async def``
no-op — their idiomatic and fastest kind of task — calling the same bench.jobs body.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from . import common, jobs


def _conninfo(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


class _AsyncPeer:
    """A peer whose client API is async: one event loop in this process drives it."""

    def __init__(self, url: str, tmp: Path):
        self.dsn = _conninfo(url)
        self.tmp = tmp / self.name
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.log = self.tmp / "workers.log"
        self.loop = asyncio.new_event_loop()

    def run(self, coro) -> Any:
        return self.loop.run_until_complete(coro)

    def close(self) -> None:
        self.run(self._close())
        self.loop.close()

    def enqueue_bulk(self, n: int, batch: int) -> float:
        import time

        started = time.perf_counter()
        self.fill(n, batch)
        elapsed = time.perf_counter() - started
        self.reset()
        return elapsed

    def enqueue_one(self, n: int) -> float:
        """Seconds for ``n`` single enqueues, one awaited call each, as a web request makes."""
        import time

        started = time.perf_counter()
        self.run(self._enqueue_each(n))
        elapsed = time.perf_counter() - started
        self.reset()
        return elapsed

    def process(self, workers: int, n: int) -> float:
        self.reset()
        self.fill(n)
        elapsed = common.run_workers(workers, lambda: self._worker(drain=True), self.log)
        self.check_drained(n)
        return elapsed

    def latency(self, samples: int, gap: float) -> list[float]:
        self.reset()
        path = self.tmp / "stamps.txt"
        path.unlink(missing_ok=True)
        pid = common.fork(lambda: self._worker(drain=False, stamp_path=str(path)), self.log)
        try:
            return common.sample_latency(lambda i: self.run(self._stamp(str(path), i)), path, samples, gap)
        finally:
            common.stop(pid, timeout=5)
            self.reset()


class PgQueuer(_AsyncPeer):
    name = "pgqueuer"

    def __init__(self, url: str, tmp: Path):
        super().__init__(url, tmp)
        self.conn = self.run(self._connect())
        from pgqueuer import Queries
        from pgqueuer.db import AsyncpgDriver

        self.queries = Queries(AsyncpgDriver(self.conn))
        self.run(self.queries.install())

    async def _connect(self):
        import asyncpg

        return await asyncpg.connect(self.dsn)

    async def _close(self) -> None:
        await self.conn.close()

    def reset(self) -> None:
        self.run(self.conn.execute("TRUNCATE pgqueuer, pgqueuer_log, pgqueuer_statistics"))

    def fill(self, n: int, batch: int = 1000) -> None:
        async def go() -> None:
            for start in range(0, n, batch):
                b = min(batch, n - start)
                await self.queries.enqueue(["noop"] * b, [None] * b, [0] * b)

        self.run(go())

    async def _enqueue_each(self, n: int) -> None:
        for _ in range(n):
            await self.queries.enqueue("noop", None, 0)

    def check_drained(self, n: int) -> None:
        left = self.run(self.conn.fetchval("SELECT count(*) FROM pgqueuer"))
        if left:
            raise RuntimeError(f"pgqueuer left {left} jobs; see {self.log}")

    async def _stamp(self, path: str, i: int) -> None:
        await self.queries.enqueue("stamp", f"{path}\n{i}".encode())

    def _worker(self, drain: bool, stamp_path: str | None = None) -> None:
        import asyncpg
        import uvloop
        from pgqueuer import Queries, QueueManager
        from pgqueuer.db import AsyncpgDriver
        from pgqueuer.types import QueueExecutionMode

        async def main() -> None:
            conn = await asyncpg.connect(self.dsn)
            qm = QueueManager(Queries(AsyncpgDriver(conn)))

            @qm.entrypoint("noop")
            async def noop(job) -> None:
                jobs.noop()

            @qm.entrypoint("stamp")
            async def stamp(job) -> None:
                path, i = job.payload.decode().split("\n")
                jobs.stamp(path, int(i))

            mode = QueueExecutionMode.drain if drain else QueueExecutionMode.continuous
            await qm.run(mode=mode, batch_size=10)
            await conn.close()

        uvloop.run(main())


class Procrastinate(_AsyncPeer):
    name = "procrastinate"

    def __init__(self, url: str, tmp: Path):
        super().__init__(url, tmp)
        self.app = self._app()
        self.opened = self.app.open_async()
        self.run(self.opened.__aenter__())
        self.run(self.app.schema_manager.apply_schema_async())

    def _app(self):
        import procrastinate

        app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=self.dsn))

        @app.task(name="noop")
        async def noop() -> None:
            jobs.noop()

        @app.task(name="stamp")
        async def stamp(path: str, i: int) -> None:
            jobs.stamp(path, i)

        return app

    async def _close(self) -> None:
        await self.opened.__aexit__(None, None, None)

    def _sql(self, sql: str) -> Any:
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            row = conn.execute(sql).fetchone() if sql.startswith("SELECT") else conn.execute(sql) and None
        return row[0] if row else None

    def reset(self) -> None:
        self._sql("TRUNCATE procrastinate_jobs, procrastinate_events, procrastinate_workers CASCADE")

    def fill(self, n: int, batch: int = 1000) -> None:
        async def go() -> None:
            task = self.app.tasks["noop"]
            for start in range(0, n, batch):
                await task.batch_defer_async(*({} for _ in range(min(batch, n - start))))

        self.run(go())

    async def _enqueue_each(self, n: int) -> None:
        task = self.app.tasks["noop"]
        for _ in range(n):
            await task.defer_async()

    def check_drained(self, n: int) -> None:
        done = int(self._sql("SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'"))
        if done != n:
            raise RuntimeError(f"procrastinate finished {done} of {n} jobs; see {self.log}")

    async def _stamp(self, path: str, i: int) -> None:
        await self.app.tasks["stamp"].defer_async(path=path, i=i)

    def _worker(self, drain: bool, stamp_path: str | None = None) -> None:
        app = self._app()

        async def main() -> None:
            async with app.open_async():
                await app.run_worker_async(wait=not drain, install_signal_handlers=False)

        asyncio.run(main())
