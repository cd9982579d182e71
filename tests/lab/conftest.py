"""A whole lab per module, in a lab directory of its own (its namespaces cannot collide with a
lab the developer runs), always torn down by the finalizer, also on failure."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab.down import down
from lab.netns import delete
from lab.proc import exists
from lab.state import LabState, lab_dir, remove_dirs
from lab.up import UpReport, up

TEST_ROOT = Path("/run/hybrid-lab-tests")


@dataclass
class RunningLab:
    ref: str
    root: Path
    report: UpReport

    @property
    def directory(self) -> Path:
        return lab_dir(self.ref, self.root)


def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (network namespaces)")


def lab_fixture(ref: str, boot: bool | None = None) -> Iterator[RunningLab]:
    _need_root()
    root = TEST_ROOT / secrets.token_hex(3)
    recorded: list[str] = []
    try:
        report = up(ref, say=print, root=root, boot=boot)
        st = LabState.load(lab_dir(ref, root))
        recorded = list(st.namespaces) if st else []
        yield RunningLab(ref, root, report)
    finally:
        down(ref, say=print, root=root)
        # A test that already ran `down` leaves nothing; anything else is removed here.
        delete([n for n in recorded if exists(n)])
        remove_dirs(root)
