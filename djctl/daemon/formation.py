"""What should run: process types from the Procfile, the scale grammar, and the saved
formation (how many of each type) that survives ``down``/``up`` and reboots.

Everything here is pure except :func:`load_process_types` and :class:`FormationStore`,
which read and write one file each. Every error a user can cause is a ValueError
subclass whose message is one line saying what is wrong and what to do.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

DEFAULT_TYPES: dict[str, str] = {"worker": "djctl work"}
MAX_PER_TYPE = 100
# The supervisor writes its own events to the log as djctl[djctl]; a process type of
# that name would make `djctl logs -p djctl` ambiguous.
RESERVED_TYPES = frozenset({"djctl"})

_TYPE_RE = re.compile(r"[A-Za-z0-9_-]+")
_PROCFILE_LINE_RE = re.compile(r"([A-Za-z0-9_-]+):[ \t]*(\S.*)")
_SIGNED_RE = re.compile(r"([+-]?)([0-9]+)")
_UNSIGNED_RE = re.compile(r"()([0-9]+)")
_STATE_VERSION = 1
_USAGE = "use TYPE=N, TYPE+N or TYPE-N (e.g. worker=2)"


class ProcfileError(ValueError):
    """The Procfile cannot be read or does not follow its grammar."""


class ScaleError(ValueError):
    """A ``djctl scale`` argument is not valid against the current formation."""


class StateFileError(ValueError):
    """The saved formation cannot be read; it is never silently replaced."""


def parse_procfile(text: str, source: str = "Procfile") -> dict[str, str]:
    """Process types to commands, in file order, from foreman's grammar: one
    ``name: command`` per line, name ``[A-Za-z0-9_-]+``, blank and ``#`` lines ignored.
    Raises ProcfileError naming ``source`` and the line for a malformed line, a
    duplicate or reserved name, or a file that defines no type."""
    types: dict[str, str] = {}
    first_seen: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        m = _PROCFILE_LINE_RE.fullmatch(stripped)
        if m is None:
            raise ProcfileError(
                f"{source} line {number}: expected 'name: command', got {_show(stripped)}"
            )
        name, command = m[1], m[2].strip()
        if name in RESERVED_TYPES:
            raise ProcfileError(
                f"{source} line {number}: process type {name!r} is reserved by djctl; rename it"
            )
        if name in types:
            raise ProcfileError(
                f"{source} line {number}: process type {name!r} is defined twice"
                f" (first on line {first_seen[name]}); keep one"
            )
        types[name] = command
        first_seen[name] = number
    if not types:
        raise ProcfileError(f"{source} defines no process types; add a line like 'worker: djctl work'")
    return types


def load_process_types(cwd: Path) -> dict[str, str]:
    """The process types of the application in ``cwd``: its Procfile when there is
    one, else ``{"worker": "djctl work"}``. Raises ProcfileError."""
    procfile = Path(cwd) / "Procfile"
    try:
        text = procfile.read_text(encoding="utf-8")
    except FileNotFoundError:
        return dict(DEFAULT_TYPES)
    except UnicodeDecodeError:
        raise ProcfileError(f"{procfile} is not UTF-8 text; fix its encoding") from None
    except OSError as e:
        raise ProcfileError(f"cannot read {procfile}: {e.strerror}") from None
    return parse_procfile(text, str(procfile))


def parse_scale(
    args: Sequence[str], current: Mapping[str, int], types: Collection[str]
) -> dict[str, int]:
    """The full formation after applying ``args`` to ``current``, one entry per type in
    ``types`` order (types missing from ``current`` count as 0; types in ``current``
    but not in ``types`` are dropped).

    Each argument is ``TYPE=N``, ``TYPE+N`` or ``TYPE-N``, applied left to right; an
    argument holding spaces is split, so ``parse_scale(format_formation(f).split(), ...)``
    and ``parse_scale([format_formation(f)], ...)`` both give ``f`` back. Raises
    ScaleError (one line) for an empty list, a malformed argument, a count that is not
    a whole number, negative, or above MAX_PER_TYPE, or an unknown type.
    """
    tokens = [token for arg in args for token in arg.split()]
    if not tokens:
        raise ScaleError(f"nothing to scale; {_USAGE}")
    known = list(types)
    result = {name: current.get(name, 0) for name in known}
    for token in tokens:
        name, op, value = _split_scale(token)
        if name not in result:
            raise ScaleError(f"unknown process type {_show(name)}; {_known(known)}")
        if op == "=":
            count = _number(token, value, signed=True)
            if count < 0:
                raise ScaleError(f"{_show(token)}: the number of processes cannot be negative")
        else:
            count = result[name] + _number(token, value, signed=False) * (1 if op == "+" else -1)
            if count < 0:
                raise ScaleError(f"{_show(token)}: {name} is at {result[name]} and cannot go below 0")
        if count > MAX_PER_TYPE:
            raise ScaleError(f"{_show(token)}: at most {MAX_PER_TYPE} processes per type")
        result[name] = count
    return result


def format_formation(formation: Mapping[str, int]) -> str:
    """``worker=2 mail=1``, types in the mapping's order ("" when empty)."""
    return " ".join(f"{name}={count}" for name, count in formation.items())


class FormationStore:
    """The saved formation, one JSON file: ``{"version": 1, "formation": {"worker": 2}}``.

    :meth:`save` replaces the file atomically (a 0600 temporary file in the same
    directory, fsync, rename, fsync of the directory) so a crash leaves the old or the
    new formation, never half of one. :meth:`load` never resets a bad file.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def load(self) -> dict[str, int] | None:
        """The saved formation, or None when nothing was saved yet. Raises
        StateFileError when the file cannot be read or is not a valid formation."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except UnicodeDecodeError:
            raise self._corrupt("not UTF-8 text") from None
        except OSError as e:
            raise StateFileError(f"cannot read state file {self.path}: {e.strerror}") from None
        try:
            data = json.loads(text)
        except ValueError as e:
            raise self._corrupt(f"not JSON: {e}") from None
        if not isinstance(data, dict) or data.get("version") != _STATE_VERSION:
            raise self._corrupt(f"expected an object with \"version\": {_STATE_VERSION}")
        formation = data.get("formation")
        if not isinstance(formation, dict):
            raise self._corrupt('"formation" is not an object')
        problem = _formation_problem(formation)
        if problem:
            raise self._corrupt(problem)
        return dict(formation)

    def save(self, formation: Mapping[str, int]) -> None:
        """Replace the saved formation atomically. Creates the directory (0700) when
        missing. Raises ValueError for a formation that load() would reject."""
        problem = _formation_problem(formation)
        if problem:
            raise ValueError(f"cannot save formation: {problem}")
        text = json.dumps({"version": _STATE_VERSION, "formation": dict(formation)}, indent=2)
        directory = self.path.parent
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(directory)

    def update(self, formation: Mapping[str, int]) -> dict[str, int]:
        """Save ``formation`` (every type of the Procfile) like :meth:`save`, keeping the
        saved counts of types it does not name: a type renamed in the Procfile and then
        renamed back finds its count again. Returns what was saved. A saved file that
        cannot be read is replaced by ``formation`` alone."""
        try:
            saved = self.load() or {}
        except StateFileError:
            saved = {}
        merged = {**dict(formation), **{k: v for k, v in saved.items() if k not in formation}}
        self.save(merged)
        return merged

    def _corrupt(self, reason: str) -> StateFileError:
        return StateFileError(f"state file {self.path} is corrupt ({reason}); fix or delete it")


def _split_scale(token: str) -> tuple[str, str, str]:
    # "=" wins; otherwise the last + or -, since type names may themselves hold "-"
    # (mail-out-1 is mail-out minus one).
    malformed = ScaleError(f"{_show(token)} is not a scale; {_USAGE}")
    if "=" in token:
        name, op, value = token.partition("=")
    else:
        at = max(token.rfind("+"), token.rfind("-"))
        if at <= 0:
            raise malformed
        name, op, value = token[:at], token[at], token[at + 1 :]
    if not _TYPE_RE.fullmatch(name):
        raise malformed
    return name, op, value


def _number(token: str, value: str, signed: bool) -> int:
    m = (_SIGNED_RE if signed else _UNSIGNED_RE).fullmatch(value)
    if m is None:
        raise ScaleError(f"{_show(token)}: {_show(value)} is not a whole number")
    digits = m[2].lstrip("0")
    # Anything this long is over MAX_PER_TYPE anyway; int() of thousands of digits raises.
    magnitude = int(digits or "0") if len(digits) <= 6 else 10**6
    return -magnitude if m[1] == "-" else magnitude


def _show(text: str) -> str:
    # Quoted and cut short, so a pasted wall of text still makes a one-line error.
    return repr(text if len(text) <= 40 else text[:37] + "...")


def _known(known: list[str]) -> str:
    return f"known types: {', '.join(known)}" if known else "no process types are defined"


def _formation_problem(formation: Mapping[Any, object]) -> str | None:
    for name, count in formation.items():
        if not isinstance(name, str) or not _TYPE_RE.fullmatch(name):
            return f"bad process type {name!r}"
        if type(count) is not int or not 0 <= count <= MAX_PER_TYPE:
            return f"{name}: count {count!r} is not a whole number from 0 to {MAX_PER_TYPE}"
    return None


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable, so the formation survives a power cut.
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
