"""`hybrid lab test`'s root-namespace guard, on canned `ip` output (no root needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab import checks
from lab.lab import open_lab

ROOT_NS = """\
2: eth0    inet 192.0.2.2/24 brd 192.0.2.255 scope global eth0
default via 192.0.2.1 dev eth0
192.0.2.0/24 dev eth0 proto kernel scope link src 192.0.2.2
"""


@pytest.mark.parametrize(
    ("extra", "ok"),
    [
        ("", True),
        ("3: x    inet 192.168.20.7/24 scope global x\n", False),  # a stack address leaked
        ("192.168.31.0/24 via 192.0.2.9 dev eth0\n", False),  # a stack route leaked
        ("198.51.100.0/24 dev y scope link\n", False),  # the lab's internet leaked
        ("10.1.0.0/16 via 192.0.2.9 dev eth0\n", True),  # not the stack's: none of our business
    ],
)
def test_checks_root_namespace_guard(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, extra: str, ok: bool
) -> None:
    monkeypatch.setattr(
        checks.proc, "run", lambda argv, **_: ROOT_NS + extra if "addr" in argv else ""
    )
    check = checks._root_untouched(open_lab("dev", tmp_path))
    assert check.ok is ok
    if not ok:
        assert extra.split()[0] in check.detail or extra.split()[3] in check.detail
