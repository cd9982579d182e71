"""Debian's SoftEther 5.01 without the lab's OpenSSL-3 shim: the health path must recover.

After the home server restarts, a bridge's cascade on this build reconnects but carries
nothing (observed: no traffic for 60 s and more). `Session.ensure_traffic()` notices, restarts
the bridge process with the spec's restart command, re-applies the OS side (the tap is new)
and proves traffic. A real deployment on this build needs exactly that health check.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.node import Testbed
from softether.session import Session

from .helpers import reference_specs

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def bare(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    with Testbed(Path(tmp_path_factory.mktemp("softether-bare")), preload=False, source="debian") as bed:
        yield bed


def test_live_defect_bridge_restart_restores_traffic_after_server_restart(bare: Testbed) -> None:
    assert bare.compat is None
    home = bare.add("home", "server", "198.51.100.1/24", lan_device="eth1")
    aws = bare.add("aws", "bridge", "198.51.100.2/24")
    specs = reference_specs(home.host, aws.restart_command, prefix=f"bare-{bare.run}")
    bridge = specs.bridges["Hybrid-VPC"]
    assert Session(bare.transport(home), specs.server).converge().changed
    assert Session(bare.transport(aws), bridge).converge().traffic_checked

    home.exec(
        f"{home.softether_command('stop')} >/dev/null; {home.softether_command('start')} >/dev/null"
    )
    home.wait_listening(5555)
    before = aws.softether_pid()
    session = Session(bare.transport(aws), bridge)
    restarted = session.ensure_traffic()  # raises TrafficError if even a restart does not help
    assert session.traffic_ok()
    if restarted:
        assert aws.softether_pid() != before
    print(f"bridge restarted by the health check: {restarted}")
