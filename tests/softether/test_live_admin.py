"""SoftEther administers only from the node itself (adminip.txt, softether/hostos.py), on
both releases the stack can run (`network.softether.source`: upstream 5.2.5188, Debian's
5.01): from the internet even the right admin password administers nothing, the converge
(vpncmd over SSH, to localhost) still works, and the cascade still connects and carries
traffic (VPN sessions never read adminip.txt)."""

from __future__ import annotations

from collections.abc import Iterator
from ipaddress import IPv4Interface
from pathlib import Path

import pytest

from lab.checks import IP_ADDRESS_DENIED, admin_login
from lab.node import Node, Testbed
from softether.derive import admin_secret, secret_names
from softether.hostos import admin_ip_text
from softether.session import Session
from topology import load_stack

from .helpers import reference_specs

pytestmark = pytest.mark.live

SITE = "Hybrid-VPC"


@pytest.fixture(scope="module", params=["upstream", "debian"])
def bed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    root = Path(tmp_path_factory.mktemp(f"admin-{request.param}"))
    with Testbed(root, source=request.param) as b:
        yield b


def test_live_admin_refused_from_the_internet_and_the_cascade_still_carries_traffic(
    bed: Testbed,
) -> None:
    home = bed.add("home", "server", "198.51.100.1/24", lan_device="eth1")
    aws = bed.add("aws", "bridge", "198.51.100.2/24")
    op = bed.attach(Node("op", "bridge", f"hc-{bed.run}-op", bed.root / "op", IPv4Interface("198.51.100.254/24")))
    prefix = f"adm-{bed.run}-pw"
    plain = reference_specs(home.host, aws.restart_command, prefix=prefix)
    # Before the converge: SoftEther's own default, administration from anywhere.
    ok, _ = admin_login(op.netns, home.host, 5555, "")  # a fresh server has no password yet
    assert ok == 0
    cert = Session(bed.transport(home), plain.server).server_certificate()
    specs = reference_specs(home.host, aws.restart_command, prefix=prefix, server_cert=cert)
    first = Session(bed.transport(home), specs.server).converge()
    assert "~ /var/lib/softether/adminip.txt: SoftEther administration from this machine only" in first.diff
    bridge = Session(bed.transport(aws), specs.bridges[SITE]).converge()
    assert bridge.traffic_checked  # the cascade, created after adminip.txt, carries traffic

    # The passwords reference_specs gave the nodes.
    secrets = {n: f"{prefix}-{i}" for i, n in enumerate(secret_names(load_stack("dev").network))}
    for node, site in ((home, "home"), (aws, SITE)):
        assert node.exec("cat /var/lib/softether/adminip.txt") == admin_ip_text()
        rc, why = admin_login(op.netns, node.host, 5555, secrets[admin_secret(site)])
        assert (rc, why.split(":")[0]) == (IP_ADDRESS_DENIED, f"error {IP_ADDRESS_DENIED}"), why
    # From the node itself (the converge's way in) administration still works: a converged
    # node reads back with nothing to change, and the cascade is still up and carrying.
    again = Session(bed.transport(aws), specs.bridges[SITE], verify_traffic="always").converge()
    assert (again.changed, again.traffic_checked) == (False, True)
    assert not Session(bed.transport(home), specs.server).converge().changed

