"""A fourth site (a second Azure VNet) comes up green: nothing assumes exactly three sites."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .conftest import RunningLab, lab_fixture

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def four() -> Iterator[RunningLab]:
    yield from lab_fixture("tests/stacks/Pulumi.four-site.yaml")


def test_lab_four_site_stack_comes_up_green(four: RunningLab) -> None:
    r = four.report
    print(f"four-site lab up: {r.seconds:.2f} s, network green after {r.network_seconds:.2f} s")
    assert set(r.results) == {"home", "Hybrid-VPC", "Hybrid-VNet", "Hybrid-VNet2"}
    assert r.matrix_ok
