"""The progress bar draws on a terminal and stays silent otherwise."""

from __future__ import annotations

import io

from alerts.progress import Progress, tracked


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bar_is_drawn_on_a_terminal_and_ends_complete() -> None:
    terminal = Terminal()
    assert list(tracked(range(5), 5, "ingest", terminal)) == [0, 1, 2, 3, 4]
    output = terminal.getvalue()
    assert output.endswith("\n")
    assert "ingest [" + "#" * 30 + "] 5/5" in output


def test_bar_is_silent_in_scripts() -> None:
    pipe = io.StringIO()
    bar = Progress(3, "import", pipe)
    for _ in range(3):
        bar.advance()
    bar.close()
    assert pipe.getvalue() == ""
