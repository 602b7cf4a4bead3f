"""Settings: precedence (flags > env > [tool.djctl] > defaults) and one clear error for bad values."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

from djctl.config import ConfigError, load_settings

# -- settings precedence ---------------------------------------------------------------------

def _pyproject(tmp_path: Path, body: str) -> Path:
    (tmp_path / "pyproject.toml").write_text(f"[project]\nname = 'app'\n\n[tool.djctl]\n{body}\n")
    return tmp_path


def test_settings_precedence_flags_env_pyproject_defaults(tmp_path):
    cwd = _pyproject(tmp_path, 'database_url = "sqlite:///toml.db"\nsleep-delay = 2\napp = ["myapp"]')
    both = {"DJ_DATABASE_URL": "sqlite:///dj.db", "DATABASE_URL": "sqlite:///plain.db"}
    assert load_settings({"database_url": "sqlite:///flag.db"}, both, cwd).database_url == "sqlite:///flag.db"
    assert load_settings({"database_url": None}, both, cwd).database_url == "sqlite:///dj.db"
    assert load_settings({}, {"DATABASE_URL": "sqlite:///plain.db"}, cwd).database_url == "sqlite:///plain.db"
    toml = load_settings({}, {}, cwd)
    assert (toml.database_url, toml.sleep_delay, toml.app) == ("sqlite:///toml.db", 2.0, ("myapp",))
    assert load_settings({}, {"DJ_SLEEP_DELAY": "0.5"}, cwd).sleep_delay == 0.5
    assert load_settings({"sleep_delay": 0.1}, {"DJ_SLEEP_DELAY": "0.5"}, cwd).sleep_delay == 0.1
    empty = tmp_path / "empty"
    empty.mkdir()
    default = load_settings({}, {}, empty)
    assert default.database_url == "sqlite:///delayed_jobs.sqlite3"
    assert (default.sleep_delay, default.max_attempts, default.max_run_time) == (5.0, 25, dt.timedelta(hours=4))
    assert default.state_dir == empty / ".djctl"


@pytest.mark.parametrize(
    "body, env, words",
    [
        ("nonsense = 1", {}, "unknown setting 'nonsense'"),
        ("sleep_delay = 'soon'", {}, "invalid value 'soon' for sleep_delay"),
        ("", {"DJ_MAX_ATTEMPTS": "0"}, "DJ_MAX_ATTEMPTS: invalid value '0'"),
        ("[broken", {}, "not valid TOML"),
    ],
)
def test_bad_settings_are_one_clear_error(tmp_path, body, env, words):
    cwd = _pyproject(tmp_path, body)
    with pytest.raises(ConfigError, match=re.escape(words)):
        load_settings({}, env, cwd)
