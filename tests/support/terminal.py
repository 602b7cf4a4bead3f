"""A real terminal for the console's tests: a tmux session running an interactive bash,
on a tmux server of its own. No tests here."""

from __future__ import annotations

import subprocess
from pathlib import Path

PROMPT = "READY$ "


class Terminal:
    """A 160x50 tmux session running an interactive bash, on a tmux server of its own."""

    def __init__(self, tmp_path: Path, env: dict[str, str]) -> None:
        self.socket = str(tmp_path / "tmux.sock")
        rc = tmp_path / "bashrc"
        rc.write_text(f"PS1='{PROMPT}'\n")
        subprocess.run(["tmux", "-S", self.socket, "-f", "/dev/null", "new-session", "-d", "-x", "160", "-y", "50",
                        "-s", "top", "-c", str(tmp_path), f"bash --noprofile --rcfile {rc}"],
                       env={**env, "TERM": "xterm-256color"}, check=True)

    def tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-S", self.socket, *args], capture_output=True, text=True,
                              check=True).stdout

    def type(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", "top", *keys)

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "top")

    def alternate(self) -> bool:
        return self.tmux("display-message", "-p", "-t", "top", "#{alternate_on}").strip() == "1"

    def close(self) -> None:
        subprocess.run(["tmux", "-S", self.socket, "kill-server"], capture_output=True)
