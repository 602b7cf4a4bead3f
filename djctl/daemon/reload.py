"""``djctl up --reload``: watch the application's Python code and say when it changed."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from watchfiles import PythonFilter, watch


class CodeWatcher:
    """Calls ``on_change(paths)`` from a thread of its own each time ``*.py`` files
    under ``root`` change (changes within ``debounce_ms`` come as one call). Ignores
    ``ignore`` (the state directory) and what watchfiles ignores by default
    (``.git``, ``__pycache__``, virtualenvs named ``.venv``...)."""

    def __init__(self, root: Path, on_change: Callable[[list[str]], None],
                 ignore: Sequence[Path] = (), debounce_ms: int = 300) -> None:
        self.root = Path(root)
        self._on_change = on_change
        self._filter = PythonFilter(ignore_paths=[str(p) for p in ignore])
        self._debounce = debounce_ms
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="djctl-reload", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        for changes in watch(self.root, watch_filter=self._filter, stop_event=self._stop,
                             debounce=self._debounce, raise_interrupt=False):
            paths = sorted({path for _change, path in changes})
            if paths:
                self._on_change(paths)
