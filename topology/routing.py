"""The routing plan: every route of the hybrid network, derived from the topology alone.

Routes live in five places: the cloud route tables (AWS VPC, Azure UDR), each bridge VM's
operating system, the home VPN server's virtual L3 switch, and the home LAN (its router or
hosts). Each place gets every range it does not own, so adding a site adds it everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Any

from .clouds import Cloud, rules
from .model import TAP_NAME, TAP_PREFIX, CloudSite, Topology, interface


@dataclass(frozen=True)
class RouteTable:
    """One cloud route table, associated with every subnet of its site.

    AWS: each route targets the bridge's network interface (never an address: .1 of a subnet
    is the VPC router). Azure: next hop type VirtualAppliance at the bridge's private address.
    Both subnets get the table, or RDS Multi-AZ failover into the second subnet breaks.

    With a bridge pair, `bridge_address` is where the first `pulumi up` places the routes
    (bridge a) and `standby_address` the other bridge's: the failover controller moves the
    routes between the two, and Pulumi ignores their target from then on.
    """

    site: str
    cloud: Cloud
    subnets: tuple[str, ...]
    bridge_address: IPv4Address
    destinations: tuple[IPv4Network, ...]
    standby_address: IPv4Address | None = None


@dataclass(frozen=True)
class OsRoute:
    destination: IPv4Network
    via: IPv4Address
    device: str | None = None


@dataclass(frozen=True)
class BridgeHost:
    """The OS side of a bridge VM: the tap's transit address and the routes over it.
    `node` names the VM (`model.BridgeVm.node`): the site's name for its first bridge."""

    site: str
    node: str
    tap_device: str
    tap_address: IPv4Interface
    routes: tuple[OsRoute, ...]


@dataclass(frozen=True)
class L3Interface:
    hub: str
    address: IPv4Interface


@dataclass(frozen=True)
class L3Route:
    destination: IPv4Network
    gateway: IPv4Address
    metric: int = 1


@dataclass(frozen=True)
class L3Switch:
    name: str
    interfaces: tuple[L3Interface, ...]
    routes: tuple[L3Route, ...]


@dataclass(frozen=True)
class RoutingPlan:
    route_tables: tuple[RouteTable, ...]
    bridges: tuple[BridgeHost, ...]
    l3_switch: L3Switch
    home_routes: tuple[OsRoute, ...]

    def bridge(self, node: str) -> BridgeHost:
        """The bridge VM named `node` (a site's name: its first or only bridge)."""
        return next(b for b in self.bridges if b.node == node)

    def route_table(self, site: str) -> RouteTable:
        return next(t for t in self.route_tables if t.site == site)

    def rows(self) -> list[tuple[str, str, str]]:
        """(where, destination, next hop) for every route, in plan order."""
        out: list[tuple[str, str, str]] = []
        for t in self.route_tables:
            where = f"{t.cloud}:{t.site} route-table"
            hop = f"{rules(t.cloud).next_hop} {t.bridge_address}"
            if t.standby_address is not None:
                hop += f" (failover: {t.standby_address})"
            out += [(where, str(d), hop) for d in t.destinations]
        for b in self.bridges:
            out += [
                (f"bridge:{b.node} os", str(r.destination), f"{r.via} dev {r.device}")
                for r in b.routes
            ]
        sw = self.l3_switch
        out += [
            (f"home:{sw.name} interface", str(i.address), f"hub {i.hub}") for i in sw.interfaces
        ]
        out += [(f"home:{sw.name} route", str(r.destination), str(r.gateway)) for r in sw.routes]
        out += [("home:lan hosts/router", str(r.destination), str(r.via)) for r in self.home_routes]
        return out

    def lines(self) -> list[str]:
        rows = self.rows()
        w0 = max(len(r[0]) for r in rows)
        w1 = max(len(r[1]) for r in rows)
        return [f"{a:<{w0}}  {b:<{w1}}  -> {c}" for a, b, c in rows]

    def to_json(self) -> list[dict[str, Any]]:
        return [{"where": a, "destination": b, "next_hop": c} for a, b, c in self.rows()]


def _remote(net: Topology, site: CloudSite) -> tuple[IPv4Network, ...]:
    """Every range a cloud site reaches through its bridge: home first, then the other sites."""
    others = [c for s in net.sites if s is not site for c in s.cidrs]
    return (*net.home.cidrs, *others)


def plan_routes(net: Topology) -> RoutingPlan:
    home, server = net.home, net.home.vpn_server
    tap = TAP_PREFIX + TAP_NAME
    tables = tuple(
        RouteTable(
            site=s.name,
            cloud=s.cloud,
            subnets=tuple(sub.name for sub in s.subnets),
            bridge_address=s.bridge.private_address,
            destinations=_remote(net, s),
            standby_address=s.bridge.pair.private_address if s.bridge.pair else None,
        )
        for s in net.sites
    )
    bridges = tuple(
        BridgeHost(
            site=s.name,
            node=vm.node,
            tap_device=tap,
            tap_address=interface(vm.transit_address, net.transit.cidr),
            routes=tuple(OsRoute(d, server.transit_address, tap) for d in _remote(net, s)),
        )
        for s in net.sites
        for vm in s.bridge_vms
    )
    lan = next(c for c in home.cidrs if server.lan_address in c)
    other_home = [
        L3Route(c, home.gateway) for c in home.cidrs if c != lan and home.gateway is not None
    ]
    switch = L3Switch(
        name=server.l3_switch,
        interfaces=(
            L3Interface(server.lan_hub, interface(server.lan_address, lan)),
            L3Interface(net.transit.hub, interface(server.transit_address, net.transit.cidr)),
        ),
        routes=(
            *other_home,
            *(L3Route(c, s.bridge.transit_address) for s in net.sites for c in s.cidrs),
        ),
    )
    home_routes = tuple(
        OsRoute(c, server.lan_address)
        for c in (*(c for s in net.sites for c in s.cidrs), net.transit.cidr)
    )
    return RoutingPlan(tables, bridges, switch, home_routes)
