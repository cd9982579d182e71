"""The test bed as a context manager: torn down however the block ends, also when its own
start fails half-way (no root needed: start and stop are stand-ins that record)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.node import Testbed


def _bed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, calls: list[str], fail_start: bool) -> Testbed:
    bed = Testbed(tmp_path)

    def start() -> Testbed:
        calls.append("start")
        if fail_start:
            raise RuntimeError("internet namespace built, node failed")
        return bed

    monkeypatch.setattr(bed, "start", start)
    monkeypatch.setattr(bed, "stop", lambda: calls.append("stop"))
    return bed


def test_testbed_failed_start_is_torn_down_and_the_error_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    with pytest.raises(RuntimeError, match="node failed"), _bed(tmp_path, monkeypatch, calls, True):
        calls.append("body")
    assert calls == ["start", "stop"]


def test_testbed_block_that_raises_still_stops_the_bed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    with pytest.raises(KeyError), _bed(tmp_path, monkeypatch, calls, False) as bed:
        assert isinstance(bed, Testbed)
        calls.append("body")
        raise KeyError("test failed")
    assert calls == ["start", "body", "stop"]
