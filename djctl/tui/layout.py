"""How the dashboard shares the terminal's rows among its panels (pure, no Textual).

Every panel first gets the least it needs to say something (its border, its header and
one row); the rows left go one at a time to each panel in turn that still wants more, so
at 80x24 every panel keeps a share and on a tall terminal each grows to what it holds;
what nobody wants goes to the last panel (the log, which always wants more).
"""

from __future__ import annotations

from collections.abc import Sequence


def share(height: int, wants: Sequence[int], least: Sequence[int]) -> list[int]:
    """Rows for each panel out of ``height``: at least ``least[i]`` (while they fit, in
    order), then round-robin up to ``wants[i]``, the remainder to the last panel."""
    rows = []
    left = height
    for n in least:
        rows.append(min(n, max(0, left)))
        left -= rows[-1]
    while left > 0:
        hungry = [i for i, want in enumerate(wants) if rows[i] < want]
        if not hungry:
            break
        for i in hungry:
            if left == 0:
                break
            rows[i] += 1
            left -= 1
    if rows:
        rows[-1] += left
    return rows
