"""One Settings object: flags > environment > ``[tool.djctl]`` in pyproject.toml > defaults."""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

DEFAULT_DATABASE_URL = "sqlite:///delayed_jobs.sqlite3"
LOG_FORMATS = ("text", "json")


class ConfigError(ValueError):
    """A setting is wrong; the message is one line a user can act on."""


@dataclass(frozen=True)
class Settings:
    """Everything djctl needs to know about where it runs."""

    database_url: str = DEFAULT_DATABASE_URL
    app: tuple[str, ...] = ()
    """Application packages: imported by workers, and allowed to define jobs."""
    allow: tuple[str, ...] = ()
    """Extra packages whose code jobs may name, besides ``app``."""
    sleep_delay: float = 5.0
    max_attempts: int = 25
    max_run_time: timedelta = timedelta(hours=4)
    destroy_failed_jobs: bool = False
    default_queue: str = "default"
    """The queue of jobs enqueued without one; name it in ``--queues`` like any other."""
    read_ahead: int = 50
    """At most how many quick jobs a worker claims per round trip (slow ones go one by one)."""
    grace_period: float = 30.0
    """Seconds a stopping worker is given to finish its job before it is killed."""
    state_dir: Path = Path(".djctl")
    """Where the supervisor keeps its pid file, socket, formation and log."""
    log_max_bytes: int = 10 * 1024 * 1024
    log_backups: int = 5
    heartbeat_interval: float = 5.0
    heartbeat_timeout: float = 60.0
    up_after: float = 5.0
    """Seconds after which a supervised process that has written nothing counts as up."""
    up_check: float = 1.5
    """Seconds each process must stay up before ``djctl up`` reports it started; one that
    exits sooner makes ``up`` fail with its last lines."""
    restart_stable_after: float = 10.0
    """A process that ran this many seconds before crashing is restarted at once."""
    restart_backoff: float = 1.0
    """First delay before restarting a process that crashed sooner; doubles per crash in a row."""
    restart_backoff_max: float = 60.0
    """The longest restart delay."""
    metrics: str = ""
    """HOST:PORT where the supervisor serves /metrics, /healthz and /readyz ("": off)."""
    metrics_remote: bool = False
    """Allow a metrics address that is not loopback."""
    metrics_queue_reuse: float = 10.0
    """Seconds one reading of the queue serves /metrics scrapes before the next scrape counts again."""
    log_format: str = "text"
    """How the supervisor writes its log: "text" (Heroku's lines) or "json" (one object a line)."""

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


_ENV = {
    "DJ_APP": "app",
    "DJ_ALLOW": "allow",
    "DJ_SLEEP_DELAY": "sleep_delay",
    "DJ_MAX_ATTEMPTS": "max_attempts",
    "DJ_MAX_RUN_TIME": "max_run_time",
    "DJ_READ_AHEAD": "read_ahead",
    "DJ_DEFAULT_QUEUE": "default_queue",
    "DJ_GRACE_PERIOD": "grace_period",
    "DJ_STATE_DIR": "state_dir",
    "DJ_HEARTBEAT_INTERVAL": "heartbeat_interval",
    "DJ_HEARTBEAT_TIMEOUT": "heartbeat_timeout",
    "DJ_UP_AFTER": "up_after",
    "DJ_UP_CHECK": "up_check",
    "DJ_RESTART_STABLE_AFTER": "restart_stable_after",
    "DJ_RESTART_BACKOFF": "restart_backoff",
    "DJ_RESTART_BACKOFF_MAX": "restart_backoff_max",
    "DJ_METRICS": "metrics",
    "DJ_METRICS_REMOTE": "metrics_remote",
    "DJ_METRICS_QUEUE_REUSE": "metrics_queue_reuse",
    "DJ_LOG_FORMAT": "log_format",
}


def environment_variables() -> tuple[str, ...]:
    """Every environment variable djctl reads its settings from."""
    return ("DJ_DATABASE_URL", "DATABASE_URL", *_ENV)


def _coerce(name: str, value: Any, origin: str) -> Any:
    """Turn a raw value (a string from the environment, a TOML value) into the field's type."""
    default = getattr(Settings(), name)
    try:
        if isinstance(default, tuple):
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(str(i).strip() for i in items if str(i).strip())
        if isinstance(default, bool):
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if isinstance(default, timedelta):
            seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
            if seconds <= 0:
                raise ValueError(value)
            return timedelta(seconds=seconds)
        if isinstance(default, Path):
            return Path(value)
        if isinstance(default, int):
            number = int(value)
            if number < 1:
                raise ValueError(value)
            return number
        if isinstance(default, float):
            real = float(value)
            if not real >= 0:  # also refuses NaN
                raise ValueError(value)
            return real
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{origin}: invalid value {value!r} for {name}") from None


def _pyproject(cwd: Path) -> Mapping[str, Any]:
    path = cwd / "pyproject.toml"
    if not path.is_file():
        return {}
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from None
    section = data.get("tool", {}).get("djctl", {})
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: [tool.djctl] must be a table")
    return section


def load_settings(
    flags: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Settings:
    """Settings from ``flags`` (None values ignored), then ``env``, then pyproject.toml, then defaults."""
    env = os.environ if env is None else env
    cwd = Path.cwd() if cwd is None else cwd
    names = {f.name for f in dataclasses.fields(Settings)}
    values: dict[str, Any] = {}

    for key, value in _pyproject(cwd).items():
        name = key.replace("-", "_")
        if name not in names:
            raise ConfigError(f"{cwd / 'pyproject.toml'}: unknown setting {key!r} in [tool.djctl]")
        values[name] = _coerce(name, value, "[tool.djctl]")

    for var, name in _ENV.items():
        if env.get(var):
            values[name] = _coerce(name, env[var], var)
    for var in ("DJ_DATABASE_URL", "DATABASE_URL"):
        if env.get(var):
            values["database_url"] = env[var]
            break

    for name, value in (flags or {}).items():
        if value is None or value == ():
            continue
        if name not in names:
            raise ConfigError(f"unknown setting {name!r}")
        values[name] = _coerce(name, value, f"--{name.replace('_', '-')}")

    settings = validate(Settings(**values))
    if not settings.state_dir.is_absolute():
        settings = settings.replace(state_dir=(cwd / settings.state_dir).resolve())
    return settings


def validate(settings: Settings) -> Settings:
    """``settings`` unchanged when its settings agree with each other; else ConfigError.

    A lease is renewed every ``heartbeat_interval`` and may be taken over after
    ``heartbeat_timeout`` without renewal, so the timeout must leave room for at least
    two renewals, or live claims would be taken over between two of them.
    """
    if settings.log_format not in LOG_FORMATS:
        raise ConfigError(f"log_format must be {' or '.join(LOG_FORMATS)} (got {settings.log_format!r}); "
                          "set DJ_LOG_FORMAT=json for JSON lines")
    interval, timeout = settings.heartbeat_interval, settings.heartbeat_timeout
    if not timeout > 0:
        raise ConfigError(f"heartbeat_timeout must be more than 0 seconds (got {timeout:g}); "
                          f"set DJ_HEARTBEAT_TIMEOUT to, say, 60")
    if not interval > 0:
        raise ConfigError(f"heartbeat_interval must be more than 0 seconds (got {interval:g}); "
                          f"set DJ_HEARTBEAT_INTERVAL to, say, 5")
    if not interval * 2 < timeout:
        raise ConfigError(f"heartbeat_interval ({interval:g}s) must be under half of heartbeat_timeout "
                          f"({timeout:g}s); lower DJ_HEARTBEAT_INTERVAL or raise DJ_HEARTBEAT_TIMEOUT")
    return settings


_current: Settings | None = None


def current() -> Settings:
    """The settings in force in this process (loaded on first use)."""
    global _current
    if _current is None:
        _current = load_settings()
    return _current


def set_current(settings: Settings) -> None:
    global _current
    _current = settings
