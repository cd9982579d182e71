"""A stack's life, rehearsed against real lab nodes through the SDK's dynamic-provider host.

Each test is one scenario of issue #10: the calls are the engine's (harness.CALLS), the inputs
the program's (conftest.Lab), the nodes real SoftEther behind real sshd.
"""

from __future__ import annotations

import json

import pytest
from pulumi.runtime import rpc

from lab.node import Node
from softether.derive import admin_secret

from .conftest import BRIDGE, HOME, Lab
from .harness import UNKNOWN

pytestmark = pytest.mark.live

ADMIN = "home-admin-from-stack-secret"


def carries_traffic(aws: Node) -> bool:
    """Independently of the provider: the home L3 switch answers over the bridge's tap."""
    ping = aws.exec("ping -n -c 3 -i 0.3 -W 1 -w 10 -I tap_vpntap 192.168.10.1", check=False)
    return "received" in ping and " 0 received" not in ping


def by_hand(node: Node, password: str | None, script: str) -> str:
    """An operator's vpncmd session inside the node (`password` None: none is set yet)."""
    node.exec(f"cat > /tmp/hc-hand.in <<'EOF'\n{script}EOF")
    answer = f"printf '%s\\n' '{password}'" if password is not None else "printf '\\n'"
    out = node.exec(
        f"{answer} > /tmp/hc-hand.pw; "
        "timeout -s KILL 10 vpncmd localhost:5555 /SERVER /IN:/tmp/hc-hand.in < /tmp/hc-hand.pw; "
        "rm -f /tmp/hc-hand.in /tmp/hc-hand.pw",
        check=False,
    )
    assert "Error occurred" not in out, out
    return out


def converge_all(lab: Lab, secrets: dict[str, str]) -> None:
    lab.host.up(HOME, lab.home_props(secrets))
    lab.host.up(BRIDGE, lab.bridge_props(secrets))


def test_first_up_unpinned_then_pinned_second_up_carries_traffic(lab: Lab) -> None:
    secrets = lab.secrets("a", ADMIN)
    # First up: the home host key is not pinned, so the program has no home node; the bridge
    # is created against a home server nobody has configured yet.
    first = lab.host.up(BRIDGE, lab.bridge_props(secrets))
    assert first.calls == ["Check", "Create"]
    outs = lab.host.outputs(BRIDGE)
    assert outs["traffic"].startswith("deferred"), outs["traffic"]
    # The user pins the key and installs the operator key (the lab's client key): next up.
    home = lab.host.up(HOME, lab.home_props(secrets))
    assert home.calls == ["Check", "Create"]
    bridge = lab.host.up(BRIDGE, lab.bridge_props(secrets))
    assert bridge.calls == ["Check", "Diff", "Update"] and not bridge.replaces
    assert lab.host.outputs(BRIDGE)["traffic"] == "verified"
    assert carries_traffic(lab.aws)


def test_preview_after_home_change_with_unknown_spec_or_target_never_errors(lab: Lab) -> None:
    secrets = lab.secrets("a", ADMIN)
    converge_all(lab, secrets)
    props = lab.bridge_props(secrets)
    # The home node changes (a hub setting): its certificate output, hence every bridge's
    # spec, is unknown during preview.
    unknown_spec = lab.host.preview(BRIDGE, props | {"spec": UNKNOWN})
    assert (unknown_spec.calls, unknown_spec.changes, unknown_spec.replaces) == (["Check", "Diff"], True, ())
    # A new public address: the target is unknown, the machine the same: an update.
    unknown_target = lab.host.preview(BRIDGE, props | {"target": UNKNOWN})
    assert (unknown_target.changes, unknown_target.replaces) == (True, ())
    # The machine itself is being replaced: its identity is unknown: a replacement.
    new_vm = lab.host.preview(BRIDGE, props | {"target": UNKNOWN, "machine": UNKNOWN})
    assert (new_vm.changes, new_vm.replaces) == (True, ("machine",))
    # The home node's own preview with a changed hub setting: an update, not a replacement.
    home = lab.home_props(secrets)
    home["spec"]["hubs"][1]["ext_options"] = {}
    changed = lab.host.preview(HOME, home)
    assert (changed.changes, changed.replaces) == (True, ())


def test_up_on_a_converged_stack_changes_nothing(lab: Lab) -> None:
    secrets = lab.secrets("a", ADMIN)
    converge_all(lab, secrets)
    before = (lab.home.config_file.read_text(), lab.aws.config_file.read_text(), lab.aws.softether_pid())
    again = [lab.host.up(HOME, lab.home_props(secrets)), lab.host.up(BRIDGE, lab.bridge_props(secrets))]
    assert [(s.calls, s.changes) for s in again] == [(["Check", "Diff"], False)] * 2
    # No Update, so no vpncmd session at all: the nodes' configurations are as they were.
    assert (lab.home.config_file.read_text(), lab.aws.config_file.read_text(), lab.aws.softether_pid()) == before
    # What Read needs is stored as secrets (the engine encrypts them); nothing else holds one.
    for name in (HOME, BRIDGE):
        outs = lab.host.state[name].outputs
        assert all(rpc.is_rpc_secret(outs[k]) for k in ("spec", "target"))
        public = json.dumps({k: v for k, v in outs.items() if k not in ("spec", "target")})
        assert [v for v in secrets.values() if v in public] == [] and "PRIVATE KEY" not in public


def test_destroy_then_up_with_fresh_secrets_converges_with_no_hand_step(lab: Lab) -> None:
    first = lab.secrets("a", ADMIN)
    converge_all(lab, first)
    lab.host.destroy(BRIDGE)
    lab.host.destroy(HOME)
    # Destroy left the home server as it was; the bridge VM went with the stack.
    lab.replace_bridge_vm("aws2")
    fresh = lab.secrets("b", ADMIN)
    assert fresh[admin_secret("home")] == first[admin_secret("home")]
    assert {k for k in fresh if fresh[k] != first[k]} == set(fresh) - {admin_secret("home")}
    converge_all(lab, fresh)
    assert lab.host.outputs(BRIDGE)["traffic"] == "verified"
    assert carries_traffic(lab.aws)


def test_adopting_a_hand_built_home_server_keeps_the_users_hub(lab: Lab) -> None:
    # As in the blog: the user's own admin password, hub DEFAULT bridged to the LAN, and
    # another hub of the user's with an L3 switch of the user's on it.
    by_hand(
        lab.home,
        None,
        f"ServerPasswordSet {ADMIN}\nBridgeCreate DEFAULT /DEVICE:eth1 /TAP:no\n"
        "HubCreate FAMILY /PASSWORD:family-hub-pw\n"
        "RouterAdd FAMILYSW\nRouterIfAdd FAMILYSW /HUB:FAMILY /IP:172.31.250.1/255.255.255.0\n",
    )
    secrets = lab.secrets("a", ADMIN)
    step = lab.host.up(HOME, lab.home_props(secrets))
    assert step.calls == ["Check", "Create"]
    outs = lab.host.outputs(HOME)
    assert outs["adopted"] == ["hub DEFAULT", "local bridge DEFAULT -> eth1"]
    assert outs["untouched"] == ["hub FAMILY", "L3 switch FAMILYSW"]
    hubs = by_hand(lab.home, ADMIN, "HubList\n")
    assert "FAMILY" in hubs and "HYBRID" in hubs
    assert "172.31.250.1" in by_hand(lab.home, ADMIN, "RouterIfList FAMILYSW\n")  # the user's switch stays
    assert lab.host.up(HOME, lab.home_props(secrets)).changes is False


def test_replaced_bridge_vm_is_converged_again_and_carries_traffic(lab: Lab) -> None:
    secrets = lab.secrets("a", ADMIN)
    converge_all(lab, secrets)
    # Same address and host key, another VM (the stack's host key is injected again): a
    # replacement, seen from the VM identity alone.
    same_key = lab.host.preview(BRIDGE, lab.bridge_props(secrets, machine="vm-2"))
    assert (same_key.changes, same_key.replaces) == (True, ("machine",))
    lab.replace_bridge_vm("aws2")
    step = lab.host.up(BRIDGE, lab.bridge_props(secrets, machine="vm-2"))
    assert step.replaces == ("machine",) and step.calls == ["Check", "Diff", "Create", "Delete"]
    assert lab.host.outputs(BRIDGE)["traffic"] == "verified"
    assert carries_traffic(lab.aws)
    assert lab.host.up(BRIDGE, lab.bridge_props(secrets, machine="vm-2")).changes is False


def test_refresh_reports_hand_drift_and_the_next_up_repairs_it(lab: Lab) -> None:
    secrets = lab.secrets("a", ADMIN)
    lab.host.up(HOME, lab.home_props(secrets))
    assert lab.host.refresh(HOME) is False  # Read of a converged node changes nothing
    by_hand(lab.home, ADMIN, "Hub DEFAULT\nUserDelete operator\n")
    assert lab.host.refresh(HOME) is True
    assert lab.host.outputs(HOME)["drift"] == [
        "~ hub DEFAULT: hub admin password",
        "+ user DEFAULT/operator",
    ]
    assert lab.host.preview(HOME, lab.home_props(secrets)).changes is True
    repair = lab.host.up(HOME, lab.home_props(secrets))
    assert repair.calls == ["Check", "Diff", "Update"]
    assert "operator" in by_hand(lab.home, ADMIN, "Hub DEFAULT\nUserList\n")
    assert lab.host.refresh(HOME) is False
    assert lab.host.outputs(HOME)["drift"] == []


def test_a_site_gone_from_the_stack_loses_its_cascade_user_at_the_next_home_up(lab: Lab) -> None:
    """Audit 2, finding 12: a cascade user whose bridge is gone must not stay enabled on the
    internet-facing server. The stack owns its transit hub (HYBRID): every user there is a
    site's cascade user, so the next converge of the home server removes the users of the
    sites it no longer has; users of the user's own hubs are never touched. (`pulumi destroy`
    does not reach home; the next `up` gives every user of the hub a new password.)"""
    by_hand(
        lab.home,
        None,
        f"ServerPasswordSet {ADMIN}\nHubCreate FAMILY /PASSWORD:family-hub-pw\n"
        "Hub FAMILY\nUserCreate mum /GROUP:none /REALNAME:none /NOTE:none\n",
    )
    secrets = lab.secrets("a", ADMIN)
    converge_all(lab, secrets)
    assert {"hybrid-vpc", "hybrid-vnet"} <= set(_users(lab, "HYBRID"))
    # The stack drops Hybrid-VNet (its bridge is destroyed with it): the home node changes.
    step = lab.host.up(HOME, lab.home_props(secrets, sites=("Hybrid-VPC",)))
    assert step.calls == ["Check", "Diff", "Update"]
    assert "- user HYBRID/hybrid-vnet" in lab.host.outputs(HOME)["diff"].splitlines()
    assert _users(lab, "HYBRID") == ["hybrid-vpc"]
    assert _users(lab, "FAMILY") == ["mum"]
    assert carries_traffic(lab.aws)  # the remaining site's cascade is untouched


def _users(lab: Lab, hub: str) -> list[str]:
    out = by_hand(lab.home, ADMIN, f"Hub {hub}\nUserList\n")
    return sorted(
        line.split("|", 1)[1].strip()
        for line in out.splitlines()
        if line.startswith("User Name") and "|" in line
    )
