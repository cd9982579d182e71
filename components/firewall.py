"""Who may reach a bridge: one rule set, rendered as an AWS security group and Azure NSGs."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Network

from topology import Topology

SSH_PORT = 22


@dataclass(frozen=True)
class Ingress:
    """Allow `protocol` ("tcp" or "all") from `source`; `port` None means every port."""

    name: str
    source: IPv4Network
    protocol: str
    port: int | None
    description: str


def hybrid_ranges(net: Topology) -> tuple[IPv4Network, ...]:
    """Every range of the hybrid network: home, transit, every cloud site."""
    return (*net.home.cidrs, net.transit.cidr, *(c for s in net.sites for c in s.cidrs))


def bridge_ingress(net: Topology) -> tuple[Ingress, ...]:
    """SSH from the operator's range, everything from the hybrid ranges, nothing else.

    No SoftEther port is opened: a cloud bridge dials out to the home server (the cascade),
    and it is configured over SSH on localhost.
    """
    rules = [Ingress("ssh-operator", net.operator_cidr, "tcp", SSH_PORT, "SSH from the operator")]
    rules += [
        Ingress(f"hybrid-{i}", cidr, "all", None, f"hybrid range {cidr}")
        for i, cidr in enumerate(hybrid_ranges(net))
    ]
    return tuple(rules)


def cidr_slug(cidr: IPv4Network) -> str:
    """A CIDR as a resource-name part: 192.168.1.0/24 -> 192-168-1-0-24."""
    return str(cidr).replace(".", "-").replace("/", "-")
