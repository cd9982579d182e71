"""Live: two real controllers (`python -m softether.failover`) in the failover test bed's
namespaces (lab/failover_bed.py), each fault into the active bridge: the standby takes over,
the vip's MAC moves to its cascade, the lab driver moves the site router's routes, the
connectivity check is green again; a stopped controller hands over at once. Times are the
bench's (bench/failover.py), not asserted here."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.failover import FAULTS, measure, settle, wait
from lab.failover_bed import BRIDGES, VIP, VIP_MAC, Bed
from lab.proc import in_ns, sh
from softether.failover.config import LabDriverConfig, parse
from softether.failover.drivers import LabDriver

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bed]:
    if os.geteuid() != 0:
        pytest.skip("the bed needs root (network namespaces)")
    with Bed(Path(tmp_path_factory.mktemp("failover-bed")), interval_s=0.5, fail_after=3, recover_after=6) as b:
        yield b
    assert not any(sh("ip", "netns", "list").count(b.ns(k)) for k in ("hub", "bra", "brb", "rtr"))


def holder(bed: Bed) -> str | None:
    cfg = parse(bed.config("a"))
    assert isinstance(cfg.driver, LabDriverConfig)
    return LabDriver(cfg.driver).holder()


def home_neighbour(bed: Bed) -> str | None:
    for n in json.loads(sh(*in_ns(bed.ns("home"), "ip", "-j", "neigh", "show", str(VIP.ip))) or "[]"):
        return n.get("lladdr")
    return None


def on_preferred(bed: Bed) -> None:
    pair = settle(bed.sides(), bed.green, 30, "a")
    assert pair is not None, [s.role() for s in bed.sides()]
    assert holder(bed) == str(BRIDGES["a"][2].ip)
    assert bed.has_vip("a") and not bed.has_vip("b")


@pytest.mark.parametrize("fault", list(FAULTS))
def test_live_bed_standby_takes_over_on_each_fault(bed: Bed, fault: str):
    on_preferred(bed)
    a, b = bed.sides()
    before = json.loads(b.state_file.read_text())["failovers"]
    took, undo = measure(FAULTS[fault], a, b, bed.green, 20)
    try:
        assert took is not None, f"{fault}: no failover within 20 s; roles {a.role()} {b.role()}"
        assert holder(bed) == str(BRIDGES["b"][2].ip)  # both ends: the cloud routes...
        assert bed.hub_port(VIP_MAC) == bed.hub_port(bed.tap_mac("b"))  # ...and the vip's MAC
        assert home_neighbour(bed) == VIP_MAC
        # The state file counts it at the round that saw the claim done.
        assert wait(lambda: json.loads(b.state_file.read_text())["failovers"] == before + 1, 2) is not None
        assert json.loads(b.state_file.read_text())["last_failover_s"] > 0
    finally:
        undo()
    if fault == "vpnbridge killed":
        return  # its tap (and the macvlan on it) went with the relay
    # The bridge that comes back gives the vip up (frozen, it still had it) ...
    assert wait(lambda: not bed.has_vip("a"), 10) is not None
    # ... and the preferred one takes the site back after recover_after green rounds.
    on_preferred(bed)


def test_live_bed_stopped_controller_hands_over_at_once(bed: Bed):
    on_preferred(bed)
    a, b = bed.sides()
    bed.procs["controller-a"].send_signal(signal.SIGTERM)
    assert bed.procs["controller-a"].wait(10) == 0
    assert not bed.has_vip("a")  # released what it held...
    assert json.loads(a.state_file.read_text())["role"] == "standby"
    # ... and b claims at its next round (the heartbeat said "leaving"), well before the
    # fail_after rounds of silence.
    took = wait(lambda: b.role() == "active" and bed.green(), 1.5 * 3 * bed.interval_s)
    assert took is not None
    assert holder(bed) == str(BRIDGES["b"][2].ip)
    bed.start_controller("a")
    on_preferred(bed)
