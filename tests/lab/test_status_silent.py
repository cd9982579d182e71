"""The "Established but silent" cascade: Debian's SoftEther 5.01 (`source: debian`) without
the lab's OpenSSL-3 compatibility library, after the home server restarts (reproduced as in
tests/softether/test_live_defect.py). SoftEther says "Online (Established)"; `hybrid status`
pings across the tunnel and reports it DOWN."""

from __future__ import annotations

import time
from collections.abc import Iterator
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from lab.node import Testbed, netns_socket
from softether.health import NodeReport, Report, probe_all, text_lines
from softether.outputs import Outputs, node_output, status_output
from softether.session import Session
from softether.spec import spec_to_dict

from ..softether.helpers import reference_specs

pytestmark = pytest.mark.live
SITE = "Hybrid-VPC"
WAIT_S = 60.0
RECONNECT_S = 20.0


@pytest.fixture(scope="module")
def bare(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    with Testbed(Path(tmp_path_factory.mktemp("status-silent")), preload=False) as bed:
        yield bed


def test_status_silent_established_cascade_is_reported_down(bare: Testbed) -> None:
    assert bare.compat is None
    home = bare.add("home", "server", "198.51.100.1/24", lan_device="eth1")
    aws = bare.add("aws", "bridge", "198.51.100.2/24")
    specs = reference_specs(home.host, aws.restart_command, prefix=f"silent-{bare.run}")
    assert Session(bare.transport(home), specs.server).converge().changed
    assert Session(bare.transport(aws), specs.bridges[SITE]).converge().traffic_checked
    outputs = Outputs.model_validate(
        {
            "status": status_output(
                "dev",
                specs.server.l3_switches[0].interfaces[1].address.ip,
                {},
                {
                    "home": node_output(
                        "server", home.host, 22, "root", home.host_key,
                        spec_to_dict(specs.server, reveal=True),
                    ),
                    SITE: node_output(
                        "bridge", aws.host, 22, "root", aws.host_key,
                        spec_to_dict(specs.bridges[SITE], reveal=True), IPv4Address("192.168.20.100"),
                    ),
                },
            )
        }
    ).status
    assert str(outputs.switch) == "192.168.10.1"
    ns = {home.host: home.netns, aws.host: aws.netns}

    def bridge_report() -> NodeReport:
        nodes = probe_all(
            outputs.nodes, outputs.switch, outputs.hosts, bare.client_key,
            lambda h, p, t: netns_socket(ns[h], h, p, t),
        )
        print("\n".join(text_lines(Report("dev", nodes))))
        return next(n for n in nodes if n.site == SITE)

    before = bridge_report()
    assert before.problems == [] and before.switch_ping is not None and before.switch_ping.up

    home.exec(
        f"{home.softether_command('stop')} >/dev/null; {home.softether_command('start')} >/dev/null"
    )
    home.wait_listening(5555)
    # Past SoftEther's fixed 10 s cascade retry and the reconnect: a cascade that reads
    # Established now was re-established after the restart (with the compatibility library
    # traffic is back within about 12 s; without it, not within 60 s: bench/lab_faults.py).
    time.sleep(RECONNECT_S)
    deadline = time.monotonic() + WAIT_S
    silent: NodeReport | None = None
    while silent is None and time.monotonic() < deadline:
        r = bridge_report()
        if r.cascades and all(c.established for c in r.cascades):
            assert r.switch_ping is not None
            if not r.switch_ping.up:
                silent = r
                break
            pytest.fail("after the restart the cascade carries traffic: the defect did not show")
        time.sleep(1.0)
    assert silent is not None, f"no Established cascade within {WAIT_S:.0f} s of the restart"
    assert silent.cascades[0].status == "Online (Established)"
    assert "tunnel DOWN (no reply from the L3 switch 192.168.10.1)" in silent.problems

