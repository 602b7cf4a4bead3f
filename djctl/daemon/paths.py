"""The supervisor's files in ``state_dir`` and the owner-only directory that holds them."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path


class StateDirError(OSError):
    """The state directory cannot be used safely; the message says what to do."""


@dataclass(frozen=True)
class Paths:
    """Where one supervisor keeps its things."""

    state_dir: Path

    @property
    def pid(self) -> Path:
        return self.state_dir / "djctl.pid"

    @property
    def socket(self) -> Path:
        return self.state_dir / "control.sock"

    @property
    def log(self) -> Path:
        return self.state_dir / "djctl.log"

    @property
    def events(self) -> Path:
        """Job outcomes reported by the processes, one JSON object a line, beside the log."""
        return self.state_dir / "events.log"

    @property
    def formation(self) -> Path:
        return self.state_dir / "formation.json"


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (0700, parents too) or check an existing one: it must be a
    directory owned by this user; group/other permissions are taken away (never
    widened). Raises StateDirError (one line)."""
    path = Path(path)
    try:
        # Each directory made here is 0700, the parents too (mkdir's parents=True would
        # make those with the umask's wider mode); existing ones are left as they are.
        for made in reversed([p for p in (path, *path.parents) if not os.path.lexists(p)]):
            try:
                made.mkdir(mode=0o700)
            except FileExistsError:
                pass  # made meanwhile, or something else is there: said below
        st = os.lstat(path)
    except OSError as e:
        raise StateDirError(f"cannot create state directory {path}: {e.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise StateDirError(f"state directory {path} is not a directory; remove it or set DJ_STATE_DIR")
    if st.st_uid != os.getuid():
        raise StateDirError(
            f"state directory {path} belongs to uid {st.st_uid}, not you; use your own (DJ_STATE_DIR)"
        )
    if st.st_mode & 0o077:
        os.chmod(path, 0o700)
    return path
