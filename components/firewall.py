"""Who may reach a bridge and the database: the rules of every security group and NSG.

Pure and computed here only: components/ renders them as the bridges' AWS security group,
the Azure sites' NSGs and the RDS security group; the lab (lab/firewall.py) renders the same
rules as nftables in the namespaces that stand for those resources. Both clouds' filters are
stateful: a reply to an allowed connection always passes, in either direction.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Network

from topology import Database, Stack, Topology

SSH_PORT = 22
ANYWHERE = IPv4Network("0.0.0.0/0")


@dataclass(frozen=True)
class Ingress:
    """Allow `protocol` ("tcp" or "all") from `source`; `port` None means every port."""

    name: str
    source: IPv4Network
    protocol: str
    port: int | None
    description: str


@dataclass(frozen=True)
class Firewall:
    """One resource's filter: inbound, only `ingress`; outbound, everything to `egress`."""

    ingress: tuple[Ingress, ...]
    egress: tuple[IPv4Network, ...]


@dataclass(frozen=True)
class FirewallRules:
    """A stack's filters: every bridge's (AWS SG, Azure NSG) and the database's (RDS SG)."""

    bridge: Firewall
    database: Firewall | None


# A bridge dials out (its cascade, package mirrors); the database starts no connection.
BRIDGE_EGRESS = (ANYWHERE,)
DATABASE_EGRESS: tuple[IPv4Network, ...] = ()


def bridge_ingress(net: Topology) -> tuple[Ingress, ...]:
    """SSH from the operator's range, everything from the hybrid ranges, nothing else.

    No SoftEther port is opened: a cloud bridge dials out to the home server (the cascade),
    and it is configured over SSH on localhost.
    """
    rules = [Ingress("ssh-operator", net.operator_cidr, "tcp", SSH_PORT, "SSH from the operator")]
    rules += [
        Ingress(f"hybrid-{i}", cidr, "all", None, f"hybrid range {cidr}")
        for i, cidr in enumerate(net.ranges.values())
    ]
    return tuple(rules)


def database_ingress(net: Topology, db: Database) -> tuple[Ingress, ...]:
    """MySQL from every range of the sites in `db.allowed_from` (cloud sites or home), in
    order, without repeats; nothing else."""
    first: dict[IPv4Network, str] = {}
    for name in db.allowed_from:
        for c in net.home.cidrs if name == net.home.name else net.site(name).cidrs:
            first.setdefault(c, name)
    return tuple(
        Ingress(f"mysql-{i}", c, "tcp", db.port, f"MySQL from {name} {c}")
        for i, (c, name) in enumerate(first.items())
    )


def firewall_rules(stack: Stack) -> FirewallRules:
    """Every filter of `stack`, as components/ creates them."""
    net = stack.network
    db = stack.database
    return FirewallRules(
        bridge=Firewall(bridge_ingress(net), BRIDGE_EGRESS),
        database=Firewall(database_ingress(net, db), DATABASE_EGRESS) if db else None,
    )


def cidr_slug(cidr: IPv4Network) -> str:
    """A CIDR as a resource-name part: 192.168.1.0/24 -> 192-168-1-0-24."""
    return str(cidr).replace(".", "-").replace("/", "-")
