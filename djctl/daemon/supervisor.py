"""The running supervisor: one loop in the main thread that feeds the Manager what
happens (children's output and exits, signals, control requests, code changes) and
carries out what it decides.

Threads exist only where blocking is unavoidable: the control socket, the heartbeat
(database) and the code watcher. They never touch the Manager; they hand the loop a
function to run (:meth:`Supervisor.call`) and wait for its result.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import selectors
import signal
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from djctl.config import Settings
from djctl.daemon import render
from djctl.daemon.control import ControlError, Server
from djctl.daemon.exporter import Address
from djctl.daemon.formation import (
    FormationStore,
    format_formation,
)
from djctl.daemon.health import LoopState
from djctl.daemon.logs import SUPERVISOR
from djctl.daemon.manager import Manager, Policy, SpawnRequest
from djctl.daemon.model import ProcessInfo, State
from djctl.daemon.monitoring import Monitoring
from djctl.daemon.paths import Paths
from djctl.daemon.printer import Printer
from djctl.daemon.process import ChildProcess, LineReader, spawner
from djctl.daemon.registry import Heartbeat, Registry
from djctl.daemon.requests import Requests
from djctl.daemon.systemd.notify import Notifier, start_watchdog

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_SIGNALS = (*_STOP_SIGNALS, signal.SIGHUP, signal.SIGCHLD)
# SIGCHLD can be coalesced or land before a child is registered: look anyway this often.
_POLL = 1.0
# Past the grace period, how long a stop may take before the loop gives up waiting.
_STOP_MARGIN = 5.0


@dataclass(frozen=True)
class Plan:
    """Everything ``djctl up`` validated, ready to run."""

    settings: Settings
    cwd: Path
    types: Mapping[str, str]
    formation: Mapping[str, int]
    policy: Policy
    host: str
    extra_env: Mapping[str, str]
    reload: bool = False
    umask: int | None = None
    """The user's umask, given back to the processes (the daemon itself runs with 0o077)."""
    metrics: Address | None = None
    """Where to serve /metrics and the probes (None: nowhere)."""

    @property
    def paths(self) -> Paths:
        return Paths(self.settings.state_dir)


class Supervisor:
    """Runs the formation until stopped; see :meth:`run`."""

    def __init__(self, plan: Plan, printer: Printer, store: FormationStore,
                 registry: Registry | None, notifier: Notifier) -> None:
        self.plan = plan
        self.printer = printer
        self.store = store
        self.registry = registry
        self.notifier = notifier
        self.manager = Manager(plan.types, self._spawn, printer.event, plan.policy)
        # Grows when a restart re-reads the Procfile: a type keeps its index (its PORT).
        self._type_names = list(plan.types)
        self._real_spawn = spawner(plan.cwd, {**os.environ, **plan.extra_env}, self._type_names,
                                   umask=plan.umask)
        self.requests = Requests(self.manager, store, printer, host=plan.host, cwd=plan.cwd,
                                 grace_period=plan.policy.grace_period, type_names=self._type_names,
                                 stop=self._stop)
        self._children: dict[int, ChildProcess] = {}
        self._calls: queue.Queue[tuple[Callable[[], Any], Future]] = queue.Queue()
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._snapshot: tuple[ProcessInfo, ...] = ()
        self._alive_at = time.monotonic()
        self._give_up_at: float | None = None
        self._stop_event = threading.Event()
        self._heartbeat: Heartbeat | None = None
        self._monitoring: Monitoring | None = None
        self._sigchld = False

    # -- entry point ---------------------------------------------------------------------

    def run(self, on_ready: Callable[[list[ProcessInfo]], None]) -> None:
        """Start the formation, call ``on_ready`` once every process has stayed up
        ``policy.up_check`` seconds (or has crashed), and return after a stop (SIGTERM, SIGINT,
        ``djctl down``) once every child has exited and its claims are released. Must run in
        the main thread."""
        previous = self._install_signals()
        heartbeat = server = watcher = monitoring = None
        try:
            self.printer.event(SUPERVISOR, f"Supervisor starting (pid {os.getpid()}, host {self.plan.host})")
            if self.registry is not None:
                for r in self.registry.recover_local():
                    self.printer.event(SUPERVISOR, render.released(r.count, r.worker) + f" ({r.name}, dead)")
                heartbeat = self._heartbeat = Heartbeat(
                    self.registry, self.plan.settings.heartbeat_interval, self.plan.settings.heartbeat_timeout,
                    lambda: self._snapshot, self.printer.event)
            monitoring = self._monitoring = self._start_monitoring()
            server = Server(self.plan.paths, self._on_request, self._on_refused)
            server.start()
            start_watchdog(self.notifier, self._stop_event,
                           lambda: time.monotonic() - self._alive_at < 10 * _POLL)
            if self.plan.reload:
                from djctl.daemon.reload import CodeWatcher

                watcher = CodeWatcher(self.plan.cwd, self._on_code_change, [self.plan.paths.state_dir])
                watcher.start()
            self.manager.scale(self.plan.formation)
            self._snapshot = tuple(self.manager.processes())
            if heartbeat is not None:
                heartbeat.start()
            self._loop(on_ready)
        except BaseException:
            for line in traceback.format_exc().rstrip().splitlines():
                self.printer.event(SUPERVISOR, line)
            self._kill_everything()
            raise
        finally:
            self._stop_event.set()
            if watcher is not None:
                watcher.stop()
            if server is not None:
                server.close()
            if monitoring is not None:
                monitoring.close()
            if heartbeat is not None:
                heartbeat.stop()
            self._restore_signals(previous)
            self.printer.event(SUPERVISOR, "Supervisor stopped")

    def _start_monitoring(self) -> Monitoring | None:
        """Serve /metrics and the probes when asked to (and a database is there to count)."""
        if self.plan.metrics is None or self.registry is None:
            return None
        monitoring = Monitoring(self.plan.metrics, self.registry.engine, self.plan.host,
                                self.plan.settings.default_queue, self.plan.types,
                                lambda: self._heartbeat.last_beat if self._heartbeat is not None else None,
                                queue_reuse=self.plan.settings.metrics_queue_reuse)
        monitoring.start()
        self.printer.event(SUPERVISOR, f"Serving metrics on http://{monitoring.address}/metrics "
                                       "(and /healthz, /readyz)")
        return monitoring

    def call(self, fn: Callable[[], Any], timeout: float = 10.0) -> Any:
        """Run ``fn`` on the loop's thread and return its result (or raise what it
        raised). For the other threads."""
        future: Future = Future()
        self._calls.put((fn, future))
        try:
            os.write(self._wake_w, b"!")
        except BlockingIOError:
            pass
        return future.result(timeout)

    # -- the loop ------------------------------------------------------------------------------

    def _loop(self, on_ready: Callable[[list[ProcessInfo]], None]) -> None:
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        ready = False
        status = ""
        next_check = 0.0
        while True:
            if self._sigchld or time.monotonic() >= next_check:
                self._sigchld = False
                next_check = time.monotonic() + _POLL
                self._reap()
            timeout = self.manager.tick()
            self._snapshot = tuple(self.manager.processes())
            self._alive_at = time.monotonic()
            if self._monitoring is not None:
                self._monitoring.publish(LoopState(self._alive_at, self._snapshot, dict(self.manager.formation),
                                                   self.manager.steady, self.manager.stopping))
            if not ready and self.manager.steady:
                ready = True
                # One restarted after a quick exit counts as crashed: up must not say it started.
                quick = set(self.manager.bounced())
                on_ready([dataclasses.replace(p, state=State.CRASHED) if p.name in quick else p
                          for p in self._snapshot])
                status = self._status()
                self.notifier.ready(status)
            elif ready and self._status() != status:
                status = self._status()
                self.notifier.status(status)
            if self.manager.done:
                return
            if self._give_up_at is not None and time.monotonic() >= self._give_up_at:
                self.printer.event(SUPERVISOR, "Processes did not stop in time; killing them")
                self._kill_everything()
                return
            wait = _POLL if timeout is None else min(timeout, _POLL)
            for key, _ in self._selector.select(wait):
                if key.data == "wake":
                    self._drain_wake()
                elif key.data == "signal":
                    self._on_signals()
                elif isinstance(key.data, ChildProcess):
                    self._read(key.data)
                else:
                    self._read_events(*key.data)

    def _spawn(self, request: SpawnRequest) -> ChildProcess:
        process = self._real_spawn(request)
        self._children[process.pid] = process
        self._selector.register(process.fileno(), selectors.EVENT_READ, process)
        if process.events is not None:
            self._selector.register(process.events.fileno(), selectors.EVENT_READ, (process.name, process.events))
        return process

    def _read_events(self, name: str, events: LineReader) -> None:
        lines = events.read_lines()
        if lines is None:
            self._selector.unregister(events.fileno())
            events.close()
            return
        for line in lines:
            self.printer.job_event(name, self.plan.host, line)
            if self._monitoring is not None:
                self._monitoring.job_event(line)

    def _read(self, process: ChildProcess) -> None:
        lines = process.read_lines()
        if lines is None:
            self._selector.unregister(process.fileno())
            process.close()
            return
        for line in lines:
            self.printer.app(process.name, line)
        if lines:
            self.manager.output(process.pid)

    def _reap(self) -> None:
        for process in list(self._children.values()):
            if not process.has_exited():
                continue
            if process.fileno() >= 0:
                self._read(process)
            code = process.reap()
            if process.fileno() >= 0:
                self._read(process)
                if process.fileno() >= 0:
                    self._selector.unregister(process.fileno())
                    process.close()
            if process.events is not None and process.events.fileno() >= 0:
                # Whatever it reported before exiting is in the pipe; a grandchild
                # that still holds the write end must not keep it open forever.
                self._read_events(process.name, process.events)
                if process.events.fileno() >= 0:
                    self._selector.unregister(process.events.fileno())
                    process.events.close()
            del self._children[process.pid]
            info = self.manager.exited(process.pid, code)
            if info is not None and info.state is not State.STOPPING and self._monitoring is not None:
                self._monitoring.restarted(info.type)
            if info is not None and self._heartbeat is not None:
                status = code if code >= 0 else 128 - code
                self._heartbeat.dead(info.name, process.pid,
                                     f"{info.name} exited with status {status} while running this job")

    def _drain_wake(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass
        while True:
            try:
                fn, future = self._calls.get_nowait()
            except queue.Empty:
                return
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn())
            except BaseException as e:  # noqa: BLE001 - handed back to the caller's thread
                future.set_exception(e)

    # -- signals ---------------------------------------------------------------------------------

    def _install_signals(self) -> dict[signal.Signals | str, Any]:
        self._sig_r, self._sig_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        previous: dict[signal.Signals | str, Any] = {sig: signal.signal(sig, lambda *_: None) for sig in _SIGNALS}
        previous["wakeup"] = signal.set_wakeup_fd(self._sig_w, warn_on_full_buffer=False)
        self._selector.register(self._sig_r, selectors.EVENT_READ, "signal")
        return previous

    def _restore_signals(self, previous: dict) -> None:
        signal.set_wakeup_fd(previous.pop("wakeup"))
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    def _on_signals(self) -> None:
        try:
            data = os.read(self._sig_r, 512)
        except BlockingIOError:
            return
        for number in data:
            if number == signal.SIGCHLD:
                self._sigchld = True
            elif number in _STOP_SIGNALS:
                if self.manager.stopping:
                    self.printer.event(SUPERVISOR, f"Got {signal.Signals(number).name} again; killing processes")
                    self._kill_everything()
                else:
                    self._stop(signal.Signals(number).name)
            elif number == signal.SIGHUP and not self.manager.stopping:
                self._restart_all("SIGHUP")

    # -- actions ---------------------------------------------------------------------------------

    def _stop(self, why: str) -> None:
        if self.manager.stopping:
            return
        self.printer.event(SUPERVISOR, f"Stopping supervisor ({why})")
        self.notifier.stopping()
        self.manager.stop_all()
        self._give_up_at = time.monotonic() + self.plan.policy.grace_period + _STOP_MARGIN

    def _restart_all(self, why: str) -> None:
        try:
            self.manager.restart(None)
        except ValueError:
            return
        self.printer.event(SUPERVISOR, render.restarting(why))

    def _kill_everything(self) -> None:
        for process in list(self._children.values()):
            process.signal(signal.SIGKILL)
        for process in list(self._children.values()):
            try:
                process.reap()
            except ChildProcessError:
                pass
        self._reap()

    def _status(self) -> str:
        up = sum(1 for p in self._snapshot if p.state is State.UP)
        return f"{format_formation(self.manager.formation)} ({up} up)"

    # -- requests from other threads ----------------------------------------------------------

    def _on_request(self, request: dict) -> dict:
        handlers = self.requests.handlers
        handler = handlers.get(request["cmd"])
        if handler is None:
            raise ControlError(f"unknown command {request['cmd']!r}; use one of {', '.join(handlers)}", usage=True)
        return self.call(lambda: handler(request))

    def _on_refused(self, pid: int, uid: int) -> None:
        self.printer.event(SUPERVISOR, f"Refused a control connection from uid {uid} (pid {pid})")

    def _on_code_change(self, paths: list[str]) -> None:
        shown = os.path.relpath(paths[0], self.plan.cwd) + (f" and {len(paths) - 1} more" if len(paths) > 1 else "")

        def restart() -> None:
            if not self.manager.stopping:
                self._restart_all(f"code changed: {shown}")

        try:
            self.call(restart)
        except Exception:  # noqa: BLE001 - the loop is stopping; nothing to restart
            pass
