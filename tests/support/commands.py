"""The ``djctl`` command line as the tests run it, and where the checkout is."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def djctl_cmd(*args: str) -> list[str]:
    """The command line running the installed djctl with these arguments."""
    return [sys.executable, "-m", "djctl", *args]
