"""Who may reach what: the paths between the sites, and every filter made from them.

One source. `flows(stack)` resolves the stack's paths to addresses: by default home <-> every
cloud site (every protocol, each way), each site of the database's `allowedFrom` -> the
database's port, the App Service subnet -> the database's port and nothing else (a site's
zone is every subnet of it but the App Service's), with `app.access: private` every other
cloud site -> the App Service private endpoint's address, HTTP and HTTPS (home reaches it by
its default path), then `network.paths`. Two filters enforce
them, kept apart as in the cloud:

- the cloud's filter, outside the VM (`firewall_rules`): each AWS bridge's security group,
  each Azure site's NSG, the RDS security group. An SG names no destination, so an AWS bridge's
  SG admits what its own site's zones may send anywhere; an NSG does name them, and ends in
  explicit denies between the site and the other hybrid ranges, because Azure's default
  `AllowVnetInBound` admits the whole VirtualNetwork tag, which includes the prefixes of the
  route table's user-defined routes (the home LAN, the other sites);
- the bridge VM's own filter (`bridge_ruleset`: nftables, written by the VM's cloud-init and
  loaded by Debian's nftables.service; the lab loads the same text into each bridge
  namespace): what it forwards between the hybrid ranges is exactly the flows, what reaches
  the VM itself from a hybrid range is a flow or a VPN node's ping (`hybrid status`).

Both clouds' filters and the VM's are stateful: a reply to an allowed connection always passes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import assert_never

from softether.derive import HEARTBEAT_PORT
from topology import CloudSite, Stack, Topology
from topology.model import TAP_NAME, TAP_PREFIX

SSH_PORT = 22
ANYWHERE = IPv4Network("0.0.0.0/0")
# The VM's own filter: its nftables table (the file Debian's nftables.service loads it from is
# topology's RULESET_FILE: the policies read it there too).
VM_TABLE = "hybrid_paths"
DATABASE = "database"
WEBSITE = "website"  # the App Service private endpoint (app.access: private)
WEB_PORTS = (80, 443)


@dataclass(frozen=True)
class Zone:
    """The addresses one end of a path names: `label` is how the stack names it."""

    label: str
    cidrs: tuple[IPv4Network, ...]

    @property
    def site(self) -> str:
        return self.label.partition("/")[0]

    def __contains__(self, address: IPv4Address) -> bool:
        return any(address in c for c in self.cidrs)


@dataclass(frozen=True)
class Flow:
    """Connections `source` may open to `destination`: TCP to `ports`, or (None) any."""

    source: Zone
    destination: Zone
    ports: tuple[int, ...] | None
    why: str  # where the stack says so

    @property
    def name(self) -> str:
        return f"{self.source.label} -> {self.destination.label}"

    def allows(self, src: IPv4Address, dst: IPv4Address, port: int | None) -> bool:
        """Whether a connection from `src` to `dst` (TCP `port`; None: not TCP) is this flow."""
        return (
            src in self.source
            and dst in self.destination
            and (self.ports is None or port in self.ports)
        )


def allowed(flows: Iterable[Flow], src: IPv4Address, dst: IPv4Address, port: int | None) -> bool:
    return any(f.allows(src, dst, port) for f in flows)


def app_subnet(stack: Stack) -> tuple[CloudSite, IPv4Network] | None:
    """The App Service's integration subnet (its site, its range), if the stack has one."""
    app, cidr = stack.app, stack.app_range
    if app is None or cidr is None:
        return None
    return stack.network.site(app.site), cidr


def site_zone(stack: Stack, site: CloudSite) -> Zone:
    """Every subnet of `site` but the App Service's (which is a zone of its own)."""
    app = app_subnet(stack)
    skip = app[1] if app is not None and app[0].name == site.name else None
    return Zone(site.name, tuple(s.cidr for s in site.subnets if s.cidr != skip))


def zone(stack: Stack, ref: str) -> Zone:
    """The zone `ref` names: `home`, a cloud site, or `SITE/SUBNET` (topology/validate.py
    checked the names)."""
    net = stack.network
    if ref == net.home.name:
        return Zone(ref, net.home.cidrs)
    name, _, subnet = ref.partition("/")
    site = net.site(name)
    return Zone(ref, (site.subnet(subnet).cidr,)) if subnet else site_zone(stack, site)


def database_zone(stack: Stack) -> Zone | None:
    """Where RDS may put the database: every subnet of its site (the subnet group's)."""
    if stack.database is None:
        return None
    site = stack.network.site(stack.database.site)
    return Zone(DATABASE, tuple(s.cidr for s in site.subnets))


def flows(stack: Stack) -> tuple[Flow, ...]:
    """Every path the stack allows, in order: defaults, then `network.paths`."""
    net = stack.network
    home = zone(stack, net.home.name)
    out: list[Flow] = []
    for site in net.sites:
        there = site_zone(stack, site)
        out += [
            Flow(home, there, None, "default: home <-> every site"),
            Flow(there, home, None, "default: home <-> every site"),
        ]
    db, target = stack.database, database_zone(stack)
    if db is not None and target is not None:
        out += [
            Flow(zone(stack, name), target, (db.port,), "database.allowedFrom")
            for name in dict.fromkeys(db.allowed_from)
        ]
        app = app_subnet(stack)
        if app is not None:
            assert stack.app is not None
            ref = f"{stack.app.site}/{stack.app.subnet}"
            out.append(Flow(Zone(ref, (app[1],)), target, (db.port,), "app: the database only"))
    endpoint = stack.app_endpoint
    if endpoint is not None:
        website = Zone(WEBSITE, (IPv4Network(endpoint.address),))
        out += [
            Flow(site_zone(stack, site), website, WEB_PORTS, "app.access: private (its endpoint)")
            for site in net.sites
            if site.name != endpoint.site
        ]
    for i, p in enumerate(net.paths):
        out.append(
            Flow(zone(stack, p.source), zone(stack, p.destination), p.ports, f"network.paths[{i}]")
        )
    return tuple(out)


# --- the cloud's filters --------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """One rule of a cloud filter, for traffic entering the resource: from `sources` to
    `destinations` (None: anywhere, as an SG's rules), TCP `ports` or (None) everything;
    `allow` False: a deny (NSG only)."""

    name: str
    sources: tuple[IPv4Network, ...]
    destinations: tuple[IPv4Network, ...] | None
    ports: tuple[int, ...] | None
    description: str
    allow: bool = True


@dataclass(frozen=True)
class Firewall:
    """One resource's filter. Inbound: the first rule that matches decides; what none matches
    is admitted if it comes from `implicit` (the cloud's own default rules), else dropped.
    Outbound: everything to `egress`."""

    ingress: tuple[Rule, ...]
    egress: tuple[IPv4Network, ...]
    implicit: tuple[IPv4Network, ...] = ()


@dataclass(frozen=True)
class FirewallRules:
    """A stack's cloud filters: each bridge's (AWS SG / Azure NSG, by site) and the database's
    (RDS SG)."""

    bridges: dict[str, Firewall]
    database: Firewall | None


# A bridge dials out (its cascade, package mirrors); the database starts no connection.
BRIDGE_EGRESS = (ANYWHERE,)
DATABASE_EGRESS: tuple[IPv4Network, ...] = ()


def _operator_ssh(net: Topology) -> Rule:
    """No SoftEther port is opened: a cloud bridge dials out to the home server (the
    cascade), and it is configured over SSH, vpncmd on localhost. (The bridge is the only
    machine of a site with a public address.)"""
    return Rule("ssh-operator", (net.operator_cidr,), None, (SSH_PORT,), "SSH from the operator")


def _inside(zone_: Zone, site: CloudSite) -> bool:
    return all(any(c.subnet_of(s) for s in site.cidrs) for c in zone_.cidrs)


def bridge_sg(stack: Stack, site: CloudSite) -> Firewall:
    """An AWS bridge's security group: SSH from the operator, and from each zone of the site
    what its flows may send (through the bridge, to any destination: an SG names none); a
    pair's, also what the other sites may send into the site (through the other bridge)."""
    rules = [_operator_ssh(stack.network)]
    seen: set[tuple[tuple[IPv4Network, ...], tuple[int, ...] | None]] = set()
    # A pair's bridge is also reached at its own address through the other (active) bridge,
    # which forwards what the other sites send into the site onto the VPC: that enters its ENI.
    paired = site.bridge.pair is not None
    for f in flows(stack):
        key = (f.source.cidrs, f.ports)
        out = _inside(f.source, site) and not _inside(f.destination, site)
        into = paired and _inside(f.destination, site) and not _inside(f.source, site)
        if (out or into) and key not in seen:
            seen.add(key)
            rules.append(
                Rule(f"path-{len(rules) - 1}", f.source.cidrs, None, f.ports, f"{f.name} ({f.why})")
            )
    if paired:
        rules.append(_node_pings(stack.network, None))
    return Firewall(tuple(rules), BRIDGE_EGRESS)


def _node_pings(net: Topology, destinations: tuple[IPv4Network, ...] | None) -> Rule:
    """A pair's bridges are pinged by the VPN nodes (`hybrid status`) also through the other
    bridge, on their NIC: the nodes' own addresses (the VM's filter admits their pings only)."""
    nodes = tuple(IPv4Network(f"{a}/32") for a in vpn_nodes(net))
    return Rule("vpn-node-pings", nodes, destinations, None, "the VPN nodes' pings through the other bridge of a pair")


def site_nsg(stack: Stack, site: CloudSite) -> Firewall:
    """An Azure site's NSG (on every subnet): SSH from the operator, each flow
    into or out of the site, then denies between the site and the other hybrid ranges; after
    them Azure's AllowVnetInBound admits the VirtualNetwork tag (the hybrid ranges: the
    VNet's, and the UDRs' prefixes), i.e. traffic within the site."""
    net = stack.network
    mine = tuple(s.cidr for s in site.subnets)
    others = tuple(
        c for c in net.ranges.values() if not any(c.subnet_of(s) for s in site.cidrs)
    )
    rules = [_operator_ssh(net)]
    for f in flows(stack):
        inbound, outbound = _inside(f.destination, site), _inside(f.source, site)
        if inbound != outbound:
            rules.append(
                Rule(
                    f"path-{len(rules) - 1}",
                    f.source.cidrs,
                    f.destination.cidrs,
                    f.ports,
                    f"{f.name} ({f.why})",
                )
            )
    if site.bridge.pair is not None:
        rules.append(_node_pings(net, tuple(IPv4Network(f"{vm.private_address}/32") for vm in site.bridge_vms)))
    rules += [
        Rule("deny-out", mine, others, None, f"nothing else from {site.name} to the other sites", False),
        Rule("deny-in", others, mine, None, f"nothing else from the other sites to {site.name}", False),
    ]
    return Firewall(tuple(rules), BRIDGE_EGRESS, implicit=tuple(net.ranges.values()))


def database_ingress(stack: Stack) -> tuple[Rule, ...]:
    """MySQL from every range of the flows to the database (its `allowedFrom` sites, the
    App Service subnet), in order, without repeats; nothing else."""
    db = stack.database
    if db is None:
        return ()
    first: dict[IPv4Network, str] = {}
    for f in flows(stack):
        if f.destination.label == DATABASE:
            for c in f.source.cidrs:
                first.setdefault(c, f.source.label)
    return tuple(
        Rule(f"mysql-{i}", (c,), None, (db.port,), f"MySQL from {name} {c}")
        for i, (c, name) in enumerate(first.items())
    )


def bridge_firewall(stack: Stack, site: CloudSite) -> Firewall:
    """The cloud's filter in front of `site`'s bridge, as its cloud makes it."""
    match site.cloud:
        case "aws":
            return bridge_sg(stack, site)
        case "azure":
            return site_nsg(stack, site)
        case _:
            assert_never(site.cloud)


def firewall_rules(stack: Stack) -> FirewallRules:
    """Every cloud filter of `stack`, as components/ creates them."""
    return FirewallRules(
        bridges={s.name: bridge_firewall(stack, s) for s in stack.network.sites},
        database=Firewall(database_ingress(stack), DATABASE_EGRESS) if stack.database else None,
    )


# --- the bridge VM's own filter -------------------------------------------------------------


def vpn_nodes(net: Topology) -> tuple[IPv4Address, ...]:
    """The VPN nodes' own addresses: `hybrid status` pings between them (from each bridge's
    private address) to tell a tunnel that carries traffic."""
    server = net.home.vpn_server
    out = [server.transit_address, *([server.host_address] if server.host_address else [])]
    for s in net.sites:
        out += [s.bridge.private_address, s.bridge.transit_address]
        out += [a for vm in s.bridge_vms for a in (vm.private_address, vm.transit_address)]
    return tuple(dict.fromkeys(out))


def pair_addresses(net: Topology) -> tuple[IPv4Address, ...]:
    """The own transit addresses of every bridge of a pair: their failover controllers
    exchange heartbeats between them."""
    return tuple(vm.transit_address for vm in net.bridge_vms if vm.role is not None)


def nft_set(items: Iterable[object]) -> str:
    """An nftables anonymous set: `{ a, b }`."""
    return "{ " + ", ".join(map(str, items)) + " }"


def bridge_ruleset(stack: Stack) -> str:
    """The bridge VM's nftables ruleset (`nft -f`), the same on every bridge of the stack.

    It replaces its own table only (other tables, e.g. the lab's stand-in for the cloud's
    filter, stay). Forwarded: replies, and new connections of the flows; nothing else (a
    bridge routes only between the hybrid ranges). To the VM itself from a hybrid range:
    replies, the flows, the VPN nodes' pings; the rest of the internet is the cloud filter's.
    """
    net = stack.network
    lines = [
        "#!/usr/sbin/nft -f",
        "# Written by hybrid-cloud (components/firewall.py): the paths between the sites.",
        f"table inet {VM_TABLE}",
        f"delete table inet {VM_TABLE}",
        f"table inet {VM_TABLE} {{",
        "  set hybrid {",
        "    type ipv4_addr; flags interval;",
        f"    elements = {nft_set(net.ranges.values())}",
        "  }",
        "  set nodes {",
        "    type ipv4_addr;",
        f"    elements = {nft_set(vpn_nodes(net))}",
        "  }",
        "  chain paths {",
    ]
    pairs = pair_addresses(net)
    # A pair's bridge is pinged on the vip's device (the failover controller's macvlan) or, as
    # the standby, on its NIC through the other bridge: from the nodes, on any interface.
    pings_from = "" if pairs else f'iifname "{TAP_PREFIX}{TAP_NAME}" '
    standbys = tuple(vm.private_address for vm in net.bridge_vms if vm.role is not None)
    for f in flows(stack):
        ports = f" tcp dport {nft_set(f.ports)}" if f.ports is not None else ""
        lines.append(
            f"    ip saddr {nft_set(f.source.cidrs)} ip daddr {nft_set(f.destination.cidrs)}{ports}"
            f' accept comment "{f.name}"'
        )
    lines += [
        "  }",
        "  chain from_hybrid {",
        f"    {pings_from}ip saddr @nodes icmp type echo-request accept",
        *(
            [
                f'    iifname "{TAP_PREFIX}{TAP_NAME}" ip saddr {nft_set(pairs)} ip daddr {nft_set(pairs)}'
                f' udp dport {HEARTBEAT_PORT} accept comment "failover heartbeat"'
            ]
            if pairs
            else []
        ),
        "    jump paths",
        "    drop",
        "  }",
        "  chain forward {",
        "    type filter hook forward priority filter; policy drop;",
        "    ct state established,related accept",
        *(
            # The other bridge of a pair forwards the nodes' pings to a standby, whose replies
            # take its own tunnel back: the active sees those replies without their requests.
            [
                f"    ip saddr @nodes ip daddr {nft_set(standbys)} icmp type {{ echo-request, echo-reply }}"
                ' accept comment "VPN node pings of a pair\'s bridges"'
            ]
            if standbys
            else []
        ),
        "    jump paths",
        "  }",
        "  chain input {",
        "    type filter hook input priority filter; policy accept;",
        '    iifname "lo" accept',
        "    ct state established,related accept",
        "    ip saddr @hybrid jump from_hybrid",
        "  }",
        "}",
    ]
    return "\n".join(lines) + "\n"


def cidr_slug(cidr: IPv4Network) -> str:
    """A CIDR as a resource-name part: 192.168.1.0/24 -> 192-168-1-0-24."""
    return str(cidr).replace(".", "-").replace("/", "-")
