"""Topology + routing plan + secrets -> the spec of every SoftEther node. Nothing typed twice.

The secrets a stack needs are named by `secret_names(topology)`; the Pulumi program generates
one random value per name (and the lab its own), and `derive` places each where it belongs:
the HYBRID user of a site is both a user on the server and the cascade's login on that site's
bridge.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from topology import RoutingPlan, Topology
from topology.model import TAP_NAME, TAP_PREFIX, BridgeVm, interface

from .spec import (
    BRIDGE_HUB,
    DEFAULT_RESTART,
    BridgeSpec,
    Cascade,
    HostOsSpec,
    Hub,
    L3Interface,
    L3Route,
    L3Switch,
    LocalBridge,
    OsRoute,
    ServerSpec,
    TrafficCheck,
    User,
)

# The failover controllers of a pair: where they live on a bridge, how often they probe, and
# the heartbeat between them (UDP, between the two bridges' own transit addresses). A round
# is a second; 3 failed rounds (3 s) give the site up, 10 green ones (10 s) before a failback
# to the preferred bridge, against flapping (the figures are measured by bench/failover.py).
FAILOVER_CONFIG = "/etc/hybrid-cloud/failover.json"
FAILOVER_UNIT = "hybrid-failover.service"
FAILOVER_MODULE = "softether.failover"
HEARTBEAT_PORT = 4799
PROBE_INTERVAL_S = 1.0
FAIL_AFTER = 3
RECOVER_AFTER = 10


# The controller's package on a bridge: `softether/failover/` of this project, alone (the
# VM has Debian's python3, no pip; `softether` is a namespace package there).
FAILOVER_LIB = "/usr/local/lib/hybrid-cloud"
FAILOVER_SOURCE = Path(__file__).resolve().parent / "failover"


def failover_package() -> tuple[tuple[str, str], ...]:
    """The failover controller's package files (path on the bridge, text): the converge writes
    them (`HostOsSpec.files`); none while the package does not exist."""
    target = f"{FAILOVER_LIB}/{FAILOVER_MODULE.replace('.', '/')}"
    sources = sorted(FAILOVER_SOURCE.glob("*.py")) if FAILOVER_SOURCE.is_dir() else []
    return tuple((f"{target}/{src.name}", src.read_text()) for src in sources)


def admin_secret(node: str) -> str:
    return f"admin/{node}"


def user_secret(hub: str, user: str) -> str:
    return f"user/{hub}/{user}"


def hub_secret(hub: str) -> str:
    return f"hub/{hub}"


def secret_names(net: Topology) -> tuple[str, ...]:
    """Every secret `derive` needs: admin passwords per node, a password per SoftEther user,
    a hub-admin password per server hub (SoftEther admits a blank one from localhost)."""
    server = net.home.vpn_server
    return (
        admin_secret(net.home.name),
        *(admin_secret(vm.node) for vm in net.bridge_vms),
        *(user_secret(server.lan_hub, u) for u in server.lan_hub_users),
        *(user_secret(net.transit.hub, vm.cascade_user) for vm in net.bridge_vms),
        hub_secret(server.lan_hub),
        hub_secret(net.transit.hub),
    )


def secret_kind(net: Topology, name: str) -> str:
    """The credential kind (a field of `hybrid-cloud:rotation`) a secret name belongs to:
    `cascade` for a site's login on the transit hub (the server's user and the bridge's
    cascade), `admin` for a node's admin password, `hub` for hub-admin passwords and the
    other hub users."""
    if name.startswith("admin/"):
        return "admin"
    if name.startswith(f"user/{net.transit.hub}/"):
        return "cascade"
    return "hub"


def tap_mac(node: str) -> str:
    """A bridge node's tap MAC: locally administered, unicast, from the node's name (the
    site's for its first bridge), so every VM that node runs on has the same one (see
    `HostOsSpec.mac`); the two bridges of a pair have two."""
    return _mac(f"hybrid-cloud tap {node}")


def vip_mac(site: str) -> str:
    """The MAC of a pair's virtual transit address: it moves with the address between the
    two bridges, so the home L3 switch's ARP entry stays right across a failover."""
    return _mac(f"hybrid-cloud vip {site}")


def _mac(seed: str) -> str:
    digest = hashlib.sha256(seed.encode()).digest()
    return ":".join(f"{b:02x}" for b in (0x02, *digest[:5]))


@dataclass(frozen=True)
class NodeSpecs:
    server: ServerSpec
    bridges: Mapping[str, BridgeSpec]  # by node name (model.BridgeVm.node)


def derive(
    net: Topology,
    routes: RoutingPlan,
    secrets: Mapping[str, str | SecretStr],
    *,
    server_address: str | None = None,
    restart_command: str | None = None,
    server_cert: str | None = None,
    home_ready: bool = True,
    certificate_rotation: int = 0,
) -> NodeSpecs:
    """Specs for the home server and each cloud bridge.

    `server_address` overrides what the bridges dial (default: the server's `public_host`;
    the lab passes its namespace address); `restart_command` overrides how a bridge process
    is restarted (default: the systemd unit of the VM); `server_cert` (PEM, e.g. from
    `Session(server).server_certificate()`) is pinned in every cascade. `home_ready` False:
    the home server is not configured by this stack yet (its host key is not pinned), so a
    bridge's cascade cannot carry traffic yet and its traffic check is left out (deferred
    to the first converge after the home server's). `certificate_rotation`: the rotation
    counter of the home server's certificate (`ServerSpec.certificate_rotation`).
    """
    missing = [n for n in secret_names(net) if n not in secrets]
    if missing:
        raise KeyError(f"secrets missing: {', '.join(missing)}")

    def secret(name: str) -> SecretStr:
        value = secrets[name]
        return value if isinstance(value, SecretStr) else SecretStr(value)

    server = net.home.vpn_server
    transit = net.transit.hub
    opts = net.softether
    sw = routes.l3_switch
    ext = {} if opts.udp_acceleration else {"DisableUdpAcceleration": 1}
    server_spec = ServerSpec(
        admin_password=secret(admin_secret(net.home.name)),
        admin_port=server.port,
        state_dir=server.state_dir,
        listeners=(server.port,),
        certificate_rotation=certificate_rotation,
        hubs=(
            Hub(
                name=server.lan_hub,
                password=secret(hub_secret(server.lan_hub)),
                users=tuple(
                    User(name=u, password=secret(user_secret(server.lan_hub, u)))
                    for u in server.lan_hub_users
                ),
            ),
            Hub(
                name=transit,
                password=secret(hub_secret(transit)),
                users=tuple(
                    User(name=vm.cascade_user, password=secret(user_secret(transit, vm.cascade_user)))
                    for vm in net.bridge_vms
                ),
                ext_options=ext,
            ),
        ),
        local_bridges=(LocalBridge(hub=server.lan_hub, device=server.bridge_device),),
        l3_switches=(
            L3Switch(
                name=sw.name,
                interfaces=tuple(L3Interface(hub=i.hub, address=i.address) for i in sw.interfaces),
                routes=tuple(
                    L3Route(network=r.destination, gateway=r.gateway, metric=r.metric)
                    for r in sw.routes
                ),
            ),
        ),
    )
    bridges = {
        vm.node: _bridge(
            net, routes, vm, secret, server_address, restart_command, server_cert, home_ready
        )
        for vm in net.bridge_vms
    }
    return NodeSpecs(server_spec, bridges)


def _bridge(
    net: Topology,
    routes: RoutingPlan,
    vm: BridgeVm,
    secret: Callable[[str], SecretStr],
    server_address: str | None,
    restart_command: str | None,
    server_cert: str | None,
    home_ready: bool,
) -> BridgeSpec:
    server = net.home.vpn_server
    host = routes.bridge(vm.node)
    cascade = Cascade(
        name=net.transit.hub,
        server=server_address or server.public_host,
        port=server.port,
        remote_hub=net.transit.hub,
        username=vm.cascade_user,
        password=secret(user_secret(net.transit.hub, vm.cascade_user)),
        max_tcp=net.softether.max_connections,
        server_cert=server_cert,
    )
    return BridgeSpec(
        admin_password=secret(admin_secret(vm.node)),
        # One listener stays for local administration (vpncmd to localhost); the cloud
        # firewall admits no SoftEther port to the bridges.
        admin_port=5555,
        listeners=(5555,),
        hubs=(Hub(name=BRIDGE_HUB, cascades=(cascade,), ext_options=_pair_hub(vm)),),
        local_bridges=(LocalBridge(hub=BRIDGE_HUB, device=TAP_NAME, tap=True),),
        host_os=HostOsSpec(
            device=host.tap_device,
            address=host.tap_address,
            mac=tap_mac(vm.node),
            files=failover_package() if vm.role is not None else (),
            routes=tuple(OsRoute(network=r.destination, via=r.via) for r in host.routes),
        ),
        traffic_check=TrafficCheck(target=server.transit_address) if home_ready else None,
        restart_command=restart_command or DEFAULT_RESTART,
    )


def _pair_hub(vm: BridgeVm) -> dict[str, int]:
    """A pair's bridge hub lets the virtual address's MAC move to its local bridge at once.
    SoftEther keeps a MAC on the session it was last seen from for 13 s and drops frames from
    it on a local bridge meanwhile (Hub.c, MAC_TABLE_EXCLUSIVE_TIME with CheckMac forced on
    local bridges): the active bridge's broadcasts from that MAC reach the standby's hub
    through its cascade, so a takeover's frames were dropped for up to 13 s."""
    return {"DisableCheckMacOnLocalBridge": 1} if vm.role is not None else {}


def retiring(specs: NodeSpecs, host_keys: Mapping[str, str]) -> NodeSpecs:
    """`specs` with each bridge's first-contact host key (its user data's, by node) retired:
    the first converge gives the VM a new one (HostOsSpec.retired_host_key)."""
    bridges = {}
    for site, spec in specs.bridges.items():
        key = host_keys.get(site)
        if key and spec.host_os is not None:
            host_os = spec.host_os.model_copy(update={"retired_host_key": " ".join(key.split()[:2])})
            spec = spec.model_copy(update={"host_os": host_os})
        bridges[site] = spec
    return NodeSpecs(specs.server, bridges)


def failover_probes(net: Topology) -> tuple[str, ...]:
    """What a pair's controllers probe: the home L3 switch's LAN address, reached only through
    the bridge's tap, its cascade, the home server and the switch. Every other site lies behind
    that switch and behind its own active bridge: probing it too would make each pair wait on
    the other's at the start (the ha lab: all four bridges standby, none green) and give both
    bridges of a pair the same red verdict when the other site fails."""
    return (str(net.home.vpn_server.lan_address),)


def failover_config(net: Topology, vm: BridgeVm, driver: Mapping[str, Any]) -> dict[str, Any]:
    """The failover controller's config on bridge `vm` of a pair (docs/failover.md;
    `softether.failover.config.load` validates it): everything but `driver`, which holds the
    cloud's ids of the moved routes (or the lab's router), comes from the topology."""
    site = net.site(vm.site)
    peer = next(v for v in site.bridge_vms if v.role != vm.role)
    assert vm.role is not None and peer.role is not None  # a pair
    cidr = net.transit.cidr
    return {
        "site": site.name,
        "me": vm.role,
        "peer": peer.role,
        "tap": TAP_PREFIX + TAP_NAME,
        "own_address": str(interface(vm.transit_address, cidr)),
        "peer_address": str(peer.transit_address),
        "vip": str(interface(site.bridge.transit_address, cidr)),
        "vip_mac": vip_mac(site.name),
        "probes": list(failover_probes(net)),
        "interval_s": PROBE_INTERVAL_S,
        "fail_after": FAIL_AFTER,
        "recover_after": RECOVER_AFTER,
        "preferred": "a",
        "heartbeat_port": HEARTBEAT_PORT,
        "driver": dict(driver),
    }
