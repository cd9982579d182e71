"""Rotation through the SDK's provider host (issue 23): `up` after a bump of
`hybrid-cloud:rotation` rotates on the real nodes what the program generated anew, in order
(the home server first: its users, hub passwords, certificate; then the bridge: its admin
password, its cascade's password and pin, a reconnect and a check), and the old credentials
are refused afterwards. A rotation stopped half-way leaves a working tunnel and the next up
finishes it."""

from __future__ import annotations

import time

import pytest

from lab.node import Node
from softether.derive import admin_secret, user_secret
from softether.spec import cert_sha1

from .conftest import ADMIN, BRIDGE, HOME, SITE, Lab
from .test_lifecycle import by_hand, carries_traffic, converge_all

pytestmark = pytest.mark.live

EVERY_KIND = {"cascade": 1, "admin": 1, "hub": 1, "certificate": 1}
CASCADE_USER = user_secret("HYBRID", "hybrid-vpc")


def admin_accepted(node: Node, password: str, hub: str | None = None) -> bool:
    """vpncmd on the node itself with `password` (server admin, or hub admin of `hub`): True
    if it administers, False if refused (vpncmd says "Access has been denied" and prompts
    again: killed after 8 s)."""
    mode, header = (f"/HUB:{hub} /CMD UserList", "User Name") if hub else ("/CMD HubList", "Virtual Hub Name")
    out = node.exec(
        f"printf '%s\\n' '{password}' | timeout -s KILL 8 vpncmd localhost:5555 /SERVER /CSV {mode}",
        check=False,
    )
    return "Access has been denied" not in out and "Error occurred" not in out and header in out


def cascade_login(home: Node, password: str, admin: str = ADMIN) -> str:
    """A probe cascade on the home server (a hub of its own, nothing bridged) logs in to
    hub HYBRID as the site's user with `password`: its status after it settles (`admin`:
    the server's admin password)."""
    setup = (
        "HubCreate PROBE /PASSWORD:probe-hub-pw\nHub PROBE\n"
        f"CascadeCreate probe /SERVER:{home.host}:5555 /HUB:HYBRID /USERNAME:hybrid-vpc\n"
        f"CascadePasswordSet probe /PASSWORD:{password} /TYPE:standard\nCascadeOnline probe\n"
    )
    by_hand(home, admin, setup)
    status = ""
    try:
        for _ in range(20):
            time.sleep(1)
            status = by_hand(home, admin, "Hub PROBE\nCascadeList\n")
            if "Online (Established)" in status or "Error" in status.split("CascadeList", 1)[-1]:
                break
    finally:
        by_hand(home, admin, "HubDelete PROBE\n")
    return status


def test_up_after_a_rotation_bump_rotates_every_kind_and_the_old_ones_are_refused(lab: Lab) -> None:
    old = converge_all(lab)
    vm = lab.wait_booted()
    old_cert = lab.host.outputs(HOME)["certificate"]
    run, new = lab.program("a", rotation=EVERY_KIND), lab.secrets("a", EVERY_KIND)
    assert {n for n in new if new[n] != old[n]} == set(new) - {admin_secret("home")}
    # Preview: both nodes change (the bridge's spec is unknown until the home's certificate is).
    assert lab.host.preview(HOME, lab.home_props(new, run)).changes is True
    t0 = time.monotonic()
    home = lab.host.up(HOME, lab.home_props(new, run))
    bridge = lab.host.up(BRIDGE, lab.bridge_props(new, run))
    print(f"rotation of every kind: {time.monotonic() - t0:.1f} s")
    assert (home.calls, bridge.calls) == (["Check", "Diff", "Update"],) * 2
    home_out, bridge_out = lab.host.outputs(HOME), lab.host.outputs(BRIDGE)
    print("home:", *home_out["rotated"], sep="\n  ")
    print("bridge:", *bridge_out["rotated"], sep="\n  ")
    assert "server certificate: regenerated (sessions stay up; the bridges pin it next)" in home_out["rotated"]
    assert "user HYBRID/hybrid-vpc: password set (no session is cut)" in home_out["rotated"]
    assert any(ln.startswith("cascade BRIDGE/HYBRID: new password set") and ln.endswith("traffic verified") for ln in bridge_out["rotated"])
    assert "admin password: set with the previous one, which is refused from now on" in bridge_out["rotated"]
    assert bridge_out["traffic"] == "verified" and carries_traffic(vm)
    # The certificate: a new one, and it is the bridge's pin.
    assert home_out["certificate"] != old_cert
    assert cert_sha1(home_out["certificate"]) in by_hand(vm, new[admin_secret(SITE)], "Hub BRIDGE\nCascadeGet HYBRID\n")
    # The old credentials are refused, the new ones work.
    assert not admin_accepted(vm, old[admin_secret(SITE)])
    assert admin_accepted(vm, new[admin_secret(SITE)])
    assert "Error" in cascade_login(lab.home, old[CASCADE_USER]).split("CascadeList", 1)[-1]
    assert "Online (Established)" in cascade_login(lab.home, new[CASCADE_USER])
    # A second up is a no-op: the rotation is complete.
    again = [lab.host.up(HOME, lab.home_props(new, run)), lab.host.up(BRIDGE, lab.bridge_props(new, run))]
    assert [s.changes for s in again] == [False, False]


def test_a_rotation_stopped_half_way_keeps_the_tunnel_and_the_next_up_finishes_it(lab: Lab) -> None:
    """The bridge gets the new cascade password before the home server's user has it (an up
    that stopped after the password was generated, `--target` of the bridge): the server
    refuses it, the bridge sets the previous one back and the update fails saying so; the
    tunnel carries traffic; the next up (home first) finishes the rotation."""
    old = converge_all(lab)
    vm = lab.wait_booted()
    run, new = lab.program("a", rotation={"cascade": 1}), lab.secrets("a", {"cascade": 1})
    with pytest.raises(Exception, match="refused the new password of cascade BRIDGE/HYBRID"):
        lab.host.up(BRIDGE, lab.bridge_props(new, run))
    assert carries_traffic(vm)
    assert lab.host.outputs(BRIDGE)["spec"]["hubs"][0]["cascades"][0]["password"] == old[CASCADE_USER]
    lab.host.up(HOME, lab.home_props(new, run))
    lab.host.up(BRIDGE, lab.bridge_props(new, run))
    assert lab.host.outputs(BRIDGE)["traffic"] == "verified" and carries_traffic(vm)
    assert "Error" in cascade_login(lab.home, old[CASCADE_USER]).split("CascadeList", 1)[-1]
