"""One table of keys: it drives the bindings, the key bar, the help screen and the palette.

The key bar shows the keys that fit, most important first, and `` …`` when some were
left out: at 80 columns an operator sees how to leave, get help, filter, open
the log, retry and delete, and ``?`` shows the rest.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.widgets import Static


@dataclass(frozen=True)
class Key:
    """A key: what it runs, its short label, what it does, and its rank in the key bar (1 first)."""

    key: str
    action: str
    label: str
    what: str
    rank: int
    changes: bool = False
    """It changes the queue or the formation: absent and refused in a read-only console."""


ACTIONS = [
    Key("plus", "scale(1)", "Scale up", "Scale the selected process type up by one", 7, changes=True),
    Key("minus", "scale(-1)", "Scale down", "Scale the selected process type down by one", 8, changes=True),
    Key("r", "retry", "Retry", "Retry the selected failed job", 5, changes=True),
    Key("R", "retry_all", "Retry all", "Retry all failed jobs shown (those the filter lets through)", 9, changes=True),
    Key("d", "delete", "Delete", "Delete the selected failed job (asks first)", 6, changes=True),
    Key("D", "delete_all", "Delete all", "Delete all failed jobs shown (asks first)", 10, changes=True),
    Key("c", "clear_queue", "Clear queue", "Clear the selected queue: delete all its jobs (asks first)", 11,
        changes=True),
    Key("p", "pause_queue", "Pause/resume", "Pause the selected queue on every host, or resume it", 12,
        changes=True),
    Key("k", "cancel_job", "Cancel job",
        "Cancel the selected process's running job: its executor is stopped at once (asks first)", 13, changes=True),
    Key("slash", "filter", "Filter", "Filter by queue, class, text or id; find jobs of every state (Enter shows one)",
        3),
    Key("l", "log", "Log", "The log, full screen; filter it like djctl logs -p, w wraps long lines", 4),
    Key("question_mark", "help", "Help", "What each key does", 2),
    Key("q", "quit", "Quit", "Quit", 1),
]
LOG_KEYS = [
    Key("escape", "app.pop_screen", "Back", "Back to the dashboard", 1),
    Key("p", "focus_filter", "Filter -p", "Show one process type or process", 3),
    Key("w", "wrap", "Wrap on/off", "Wrap long lines, or cut them and scroll sideways", 2),
    Key("q", "quit", "Quit", "Quit", 4),
]
SHOWN = {"escape": "esc", "plus": "+", "minus": "-", "slash": "/", "question_mark": "?"}
HELP = [(SHOWN.get(k.key, k.key), k.what) for k in ACTIONS] + [
    ("tab", "Move between the processes, queues and failed jobs"),
    ("enter", "On a failed job: its traceback, full screen, the job's own frames first"),
    ("ctrl+p", "Command palette"),
]


def allowed(keys: list[Key], read_only: bool) -> list[Key]:
    """The keys a console shows: in a read-only one, none that changes anything."""
    return [k for k in keys if not (read_only and k.changes)]


def key_bar(keys: list[Key], width: int) -> Text:
    """The keys that fit in ``width`` cells, by rank, shown in table order; `` …`` at the
    end when any is left out (``?``, ranked second, lists them all)."""
    def item(k: Key) -> Text:
        return Text.assemble((f" {SHOWN.get(k.key, k.key)}", "bold"), f" {k.label} ")

    chosen: list[Key] = []
    used = 0
    ranked = sorted(keys, key=lambda k: k.rank)
    for n, k in enumerate(ranked):
        room = width - (0 if n == len(ranked) - 1 else 2)  # room for the " …" that says there is more
        if used + item(k).cell_len > room:
            break
        chosen.append(k)
        used += item(k).cell_len
    out = Text(no_wrap=True, overflow="crop")
    for k in keys:
        if k in chosen:
            out.append_text(item(k))
    if len(chosen) < len(keys):
        out.append_text(Text(" …", "dim"))
    return out


class KeyBar(Static):
    """The bottom line: the most important keys that fit."""

    DEFAULT_CSS = "KeyBar { height: 1; dock: bottom; background: $panel; }"

    def __init__(self, keys: list[Key] = ACTIONS, id: str | None = None) -> None:
        super().__init__(id=id)
        self.keys = keys

    def render(self) -> Text:
        return key_bar(self.keys, self.size.width)
