"""The console's tables: rows refilled by key, columns dropped by priority when narrow.

A table is given every column it could show, each with a priority (1 first); at any
width it shows the columns of the highest priorities that fit, in their own order, and
sizes each to what its rows hold now, so a column shrinks again when the long value that
widened it leaves. One column may ``stretch`` into the width left, cutting its values
with an ellipsis where they do not fit (an error message) instead of pushing the rest off screen.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rich.cells import cell_len
from rich.text import Text
from textual import events
from textual.widgets import DataTable

PADDING = 1
"""DataTable's cell padding on each side of a value."""


@dataclass(frozen=True)
class Column:
    """A column: its header, how much it matters (1 most) and whether it takes the width left."""

    label: str
    priority: int = 1
    stretch: bool = False
    least: int = 12
    """The fewest cells a stretching column is shown in."""


def _width(cell: Any) -> int:
    return cell.cell_len if isinstance(cell, Text) else cell_len(str(cell))


def fit(columns: Sequence[Column], rows: Sequence[Sequence[Any]], width: int) -> list[tuple[int, int]]:
    """Which columns to show in ``width`` cells and how wide: ``(index, width)`` in the
    columns' order. Columns join by priority (then position) while they fit; a stretching
    column counts as its ``least`` and then gets what is left, up to its widest value."""
    natural = [max([cell_len(c.label)] + [_width(r[i]) for r in rows]) for i, c in enumerate(columns)]
    chosen: list[int] = []
    used = 0
    for i in sorted(range(len(columns)), key=lambda i: (columns[i].priority, i)):
        need = (min(natural[i], columns[i].least) if columns[i].stretch else natural[i]) + 2 * PADDING
        if used + need <= width or not chosen:
            chosen.append(i)
            used += need
    chosen.sort()
    widths = {i: natural[i] for i in chosen}
    stretch = [i for i in chosen if columns[i].stretch]
    if stretch:
        i = stretch[0]
        rest = width - sum(widths[j] + 2 * PADDING for j in chosen if j != i) - 2 * PADDING
        widths[i] = max(1, min(natural[i], rest))
    return [(i, widths[i]) for i in chosen]


class RowTable(DataTable):
    """A row-cursor table refilled from keyed rows, keeping the cursor on the same key
    and in view, its columns fitted to its width."""

    def __init__(self, *columns: Column | str, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self._all = [c if isinstance(c, Column) else Column(c) for c in columns]
        self._rows: list[tuple[str, tuple]] = []
        self._shown: list[tuple[int, int]] = []

    @property
    def shown_labels(self) -> list[str]:
        """The headers of the columns shown now."""
        return [self._all[i].label for i, _ in self._shown]

    def on_mount(self) -> None:
        self._rebuild(None)

    def on_resize(self, event: events.Resize) -> None:
        if fit(self._all, [c for _, c in self._rows], self._room()) != self._shown:
            self._rebuild(self.selected_key())

    def fill(self, rows: list[tuple[str, tuple]]) -> None:
        """Show ``rows`` (key, cells for every column), keeping the cursor on its key."""
        if rows == self._rows:
            return
        keep = self.selected_key()
        self._rows = rows
        self._rebuild(keep)

    def _room(self) -> int:
        # The vertical scrollbar takes its cells whether it shows or not, so nothing jumps.
        return max(1, self.size.width - self.styles.scrollbar_size_vertical)

    def _rebuild(self, keep: str | None) -> None:
        self._shown = fit(self._all, [c for _, c in self._rows], self._room())
        self.clear(columns=True)
        for i, width in self._shown:
            self.add_column(self._all[i].label, width=width, key=str(i))
        for key, cells in self._rows:
            self.add_row(*(self._cell(cells[i], self._all[i]) for i, _ in self._shown), key=key)
        keys = [k for k, _ in self._rows]
        if keep in keys:
            self.move_cursor(row=keys.index(keep), animate=False)
            # Rows above it may have arrived: keep what the operator acts on in view.
            self.call_after_refresh(self._scroll_cursor_into_view)

    @staticmethod
    def _cell(value: Any, column: Column) -> Any:
        if column.stretch:
            text = value.copy() if isinstance(value, Text) else Text(str(value))
            text.no_wrap, text.overflow = True, "ellipsis"
            return text
        return value

    def selected_key(self) -> str | None:
        """The key of the row under the cursor, or None."""
        if not self._rows or not (0 <= self.cursor_row < len(self._rows)):
            return None
        return self._rows[self.cursor_row][0]

    def cursor_in_view(self) -> bool:
        """Whether the row under the cursor is on screen now (an action on a row the
        operator cannot see must not happen)."""
        top = round(self.scroll_y)
        rows = self.size.height - (self.header_height if self.show_header else 0)
        return top <= self.cursor_row < top + max(0, rows)
