"""`hybrid lab up --no-boot`: the bridges as plain SoftEther processes (no systemd, no
cloud-init), the fast lab of earlier rounds, still the same network."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lab.checks import checks
from lab.lab import open_lab
from lab.node import Node
from lab.proc import LabError
from lab.up import up
from lab.vm import VmNode

from .conftest import RunningLab, lab_fixture

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def plain() -> Iterator[RunningLab]:
    yield from lab_fixture("dev", boot=False)


def test_lab_up_without_boot_runs_plain_bridges_and_passes_the_checks(plain: RunningLab) -> None:
    assert plain.report.matrix_ok
    lab = open_lab(plain.ref, plain.root)
    bridges = [n for n in lab.nodes.values() if n.kind == "bridge"]
    assert bridges and all(type(n) is Node for n in bridges)
    assert [c.line() for c in checks(plain.ref, plain.root) if not c.ok] == []
    assert up(plain.ref, say=print, root=plain.root).mutating == 0  # it stays unbooted


def test_lab_up_refuses_to_boot_a_running_unbooted_lab(plain: RunningLab) -> None:
    with pytest.raises(LabError, match="hybrid lab down first"):
        up(plain.ref, say=print, root=plain.root, boot=True)
    assert not any(isinstance(n, VmNode) for n in open_lab(plain.ref, plain.root).nodes.values())
