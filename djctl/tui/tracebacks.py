"""A failed job's traceback, the job's own frames first (pure, no Textual).

last_error holds ``Class: message``, then Python's traceback, outermost frame first: the
frames of djctl's executor and of libraries come before the line of the job that raised.
On a small pane that line is below the fold, so the console shows the job's own frames
first and the others after a rule.
"""

from __future__ import annotations

import re

_FRAME = re.compile(r'  File "(?P<path>[^"]*)", line \d+')
_NOT_OWN = re.compile(r"(^|/)djctl/|site-packages/|dist-packages/|/lib/python3[.\d]*/|^<frozen ")


def own_frames_first(text: str) -> str:
    """``text`` with the frames of the job's own code moved up, right after the error
    line; djctl's and libraries' frames follow under ``(djctl and library frames)``.
    Text that is not a traceback comes back unchanged."""
    lines = text.splitlines()
    first = next((i for i, line in enumerate(lines) if _FRAME.match(line)), None)
    if first is None:
        return text
    head = lines[:first]
    frames: list[list[str]] = []
    tail: list[str] = []
    for line in lines[first:]:
        if _FRAME.match(line):
            frames.append([line])
        elif line.startswith("    ") and frames and not tail:
            frames[-1].append(line)
        else:
            tail.append(line)
    own = [f for f in frames if not _NOT_OWN.search(_frame_path(f[0]))]
    other = [f for f in frames if f not in own]
    if not own or not other:
        return text
    out = head + [line for f in own for line in f] + ["(djctl and library frames)"]
    out += [line for f in other for line in f] + tail
    return "\n".join(out)


def _frame_path(line: str) -> str:
    """The file named by a frame line (one that ``_FRAME`` matched)."""
    m = _FRAME.match(line)
    assert m is not None
    return m["path"]
