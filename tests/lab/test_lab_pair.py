"""stacks/Pulumi.ha.yaml in the lab: a bridge pair per cloud site, the failover controller in
each booted bridge (its package from the converge, its config and unit from cloud-init, the
lab driver on the site router). Green with the primaries active; the active bridge's
vpnbridge killed, the matrix is green again with the traffic on the standby."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from lab.lab import Lab, open_lab, transport
from lab.status import wait_for_matrix
from softether.derive import failover_package

from .conftest import RunningLab, lab_fixture

pytestmark = pytest.mark.lab

STATE = "/run/hybrid-failover/state.json"
# The controllers give a site up after 3 failed 1 s rounds; the anchors are 10-15 s.
RECOVERY_S = 30.0


@pytest.fixture(scope="module")
def ha() -> Iterator[RunningLab]:
    if not failover_package():
        pytest.skip("softether/failover/ (helper failover's controller) is not in this tree")
    yield from lab_fixture("stacks/Pulumi.ha.yaml")


def _state(lab: Lab, node: str) -> dict[str, Any]:
    t = transport(lab, lab.nodes[node])
    try:
        r = t.run(f"cat {STATE}", timeout=10)
    finally:
        t.close()
    return json.loads(r.stdout) if r.rc == 0 else {}


def _roles(lab: Lab, deadline_s: float = RECOVERY_S) -> dict[str, str]:
    """Each bridge's role once every site has exactly one active (bounded)."""
    t0 = time.monotonic()
    while True:
        roles = {n: _state(lab, n).get("role", "") for n in lab.nodes if n != lab.stack.network.home.name}
        sites = {vm.site for vm in lab.stack.network.bridge_vms}
        one = all(
            [roles[vm.node] for vm in lab.stack.network.bridge_vms if vm.site == s].count("active") == 1
            for s in sites
        )
        if one or time.monotonic() - t0 > deadline_s:
            return roles
        time.sleep(1)


def _router_via(lab: Lab, site: str) -> set[str]:
    from lab.proc import run

    out = run(["ip", "-n", lab.layout.router(site).name, "route", "show"])
    return {line.split(" via ")[1].split()[0] for line in out.splitlines() if " via " in line}


def test_lab_pair_comes_up_green_with_the_primaries_active(ha: RunningLab) -> None:
    assert set(ha.report.results) == {"home", "Hybrid-VPC", "Hybrid-VPC-b", "Hybrid-VNet", "Hybrid-VNet-b"}
    assert ha.report.matrix_ok
    lab = open_lab(ha.ref, ha.root)
    assert _roles(lab) == {
        "Hybrid-VPC": "active",
        "Hybrid-VPC-b": "standby",
        "Hybrid-VNet": "active",
        "Hybrid-VNet-b": "standby",
    }
    assert _router_via(lab, "Hybrid-VPC") == {"192.168.20.100"}


def test_lab_pair_active_bridge_killed_moves_the_traffic_to_the_standby(ha: RunningLab) -> None:
    lab = open_lab(ha.ref, ha.root)
    t = transport(lab, lab.nodes["Hybrid-VPC"])
    try:
        t.run("systemctl kill -s KILL softether-vpnbridge.service; systemctl stop softether-vpnbridge.service", timeout=20)
    finally:
        t.close()
    green, took = wait_for_matrix(lab.layout, RECOVERY_S)
    print(f"vpnbridge killed on the active bridge: matrix green again after {took:.1f} s")
    assert green
    assert _roles(lab)["Hybrid-VPC-b"] == "active"
    assert _router_via(lab, "Hybrid-VPC") == {"192.168.21.100"}
