"""What differs between the clouds a site can live in: one frozen `CloudRules` per cloud kind.

Validation, routing, cost, the lab's layout and the diagram read a cloud's rules from here
(`rules(site.cloud)`); code that must do different things per cloud (the components, the cost
lines) dispatches with an exhaustive `match site.cloud` ending in `assert_never`, so pyright
names every place a new cloud kind has to reach. docs/clouds.md lists those places.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, assert_never

Cloud = Literal["aws", "azure"]


@dataclass(frozen=True)
class CloudRules:
    """The rules of one cloud kind that the topology, the lab and the reports depend on."""

    kind: Cloud
    label: str  # the cloud's name in messages
    # The provider config key that sets the region of every site without its own `region`.
    region_key: str
    # Host offsets below this are the cloud's own in every subnet (the broadcast address too).
    reserved_low: int
    # The smallest and the largest subnet the cloud accepts (an AWS VPC block too).
    max_prefix: int
    min_prefix: int
    # Whether a subnet names its availability zone: required on AWS, refused on Azure (a
    # subnet spans the region's zones).
    zones: bool
    # The smallest size that runs a SoftEther bridge.
    default_bridge_size: str
    # The sizes with an arm64 processor (a full match): their image is another one.
    arm64_sizes: str
    # The CPU credit mode of a burstable bridge (`burstable` matches its size's family), or
    # None where the cloud has no such setting.
    cpu_credits: str | None
    burstable: str | None
    # The route tables' next hop (the bridge), in `hybrid routes` and in the diagram.
    next_hop: str
    next_hop_short: str
    diagram_color: str
    # `hybrid cost`: the price table's keys (topology/prices.yaml, each `<kind>_...`) of what
    # every bridge has, and the name of its public address.
    price_vm: str
    price_public_ip: str
    public_ip_label: str
    price_egress: str

    def architecture(self, size: str) -> Literal["arm64", "x86_64"]:
        """The processor architecture of a bridge of `size`, which its image follows."""
        return "arm64" if re.fullmatch(self.arm64_sizes, size) else "x86_64"

    def credits_of(self, size: str) -> str | None:
        """The CPU credit mode of a bridge of `size` (None: the cloud's default applies)."""
        family = size.split(".")[0]
        if self.burstable is not None and re.fullmatch(self.burstable, family):
            return self.cpu_credits
        return None


AWS = CloudRules(
    kind="aws",
    label="AWS",
    region_key="aws:region",
    # AWS reserves the network address, .1 (VPC router), .2 (DNS), .3 (future use) and the
    # broadcast address of every subnet.
    reserved_low=4,
    max_prefix=28,
    min_prefix=16,
    zones=True,
    # ARM: the cheapest per hour.
    default_bridge_size="t4g.nano",
    # Graviton families (t4g, m7gd, c6gn) and a1.
    arm64_sizes=r"(a1|[a-z]+\d+[a-z]*g[a-z]*)\..*",
    # AWS burstable (T) instances bill CPU above their baseline as credits. The bridges run in
    # unlimited mode, AWS's default for T3/T4g, set explicitly: in standard mode a t4g.nano
    # without a credit balance runs at its 5 % baseline, and the first-boot build would take
    # hours. The surplus is priced by `hybrid cost`.
    cpu_credits="unlimited",
    burstable=r"t\d+[a-z]*",
    # The target is the bridge's network interface, never an address: .1 is the VPC router.
    next_hop="eni of bridge",
    next_hop_short="eni of",
    diagram_color="#fdf0dc",
    price_vm="aws_instance",
    price_public_ip="aws_public_ipv4",
    public_ip_label="public IPv4",
    price_egress="aws_egress",
)

AZURE = CloudRules(
    kind="azure",
    label="Azure",
    region_key="azure-native:location",
    # Azure reserves the network address, .1 (default gateway), .2-.3 (DNS) and broadcast.
    reserved_low=4,
    max_prefix=29,
    # No limit of its own: every range is RFC 1918, /8 at most.
    min_prefix=8,
    zones=False,
    default_bridge_size="Standard_B1ls",
    # Ampere sizes carry a `p` feature letter (Standard_B2pts_v2, Standard_D2ps_v5).
    arm64_sizes=r"Standard_[A-Z]+\d+[a-z]*p[a-z]*(_v\d+)?",
    cpu_credits=None,
    burstable=None,
    # Next hop type VirtualAppliance at the bridge's private address.
    next_hop="virtual appliance",
    next_hop_short="appliance",
    diagram_color="#e3eefb",
    price_vm="azure_vm",
    price_public_ip="azure_public_ip",
    public_ip_label="public IP",
    price_egress="azure_egress",
)

CLOUDS: tuple[CloudRules, ...] = (AWS, AZURE)


def bridge_image(cloud: Cloud, size: str) -> str:
    """What a bridge of `size` runs: Debian 12 for its architecture (`debian-12 arm64`)."""
    return f"debian-12 {rules(cloud).architecture(size)}"


def rules(cloud: Cloud) -> CloudRules:
    match cloud:
        case "aws":
            return AWS
        case "azure":
            return AZURE
        case _:
            assert_never(cloud)


# The provider config key of each cloud's region, by cloud kind.
REGION_KEY: dict[str, str] = {r.kind: r.region_key for r in CLOUDS}
