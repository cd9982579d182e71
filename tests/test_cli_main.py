"""cli/main.py: its docstring names every command the parser registers."""

from __future__ import annotations

import re

import cli.main


def test_cli_main_docstring_lists_every_command() -> None:
    first = (cli.main.__doc__ or "").splitlines()[0]
    listed = re.findall(r"[a-z-]+", first.split(":", 1)[1])
    parser = cli.main.build_parser()
    registered = next(a for a in parser._actions if a.dest == "command").choices
    assert registered is not None
    assert sorted(listed) == sorted(registered)
