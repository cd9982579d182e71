"""Cross-field rules of a stack, each reported as one line: `<field path>: <value> <problem>`.

Every rule runs (no stop at the first problem), so a user sees all of them at once. The rules
are the project's own and the targets' (AWS, Azure, SoftEther) create-time constraints on the
values a stack file gives them: docs/rules.md lists each with its source. This module holds
the network's; `validate_paas.py` the database's, the app's and the budgets'.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator, Mapping
from ipaddress import IPv4Address, IPv4Network, ip_address
from typing import assert_never

from . import catalog
from .clouds import rules
from .model import TAP_NAME, TAP_PREFIX, CloudSite, Stack, Subnet, Topology, host_problem
from .validate_paas import paas_problems

RFC1918 = tuple(IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))
# Where no operator and no home server is seen from the internet: RFC 1918, shared address
# space (RFC 6598), "this network", loopback, link-local, multicast and reserved (RFC 6890).
# The documentation ranges are not here: the reference stacks use them as placeholders.
NOT_ON_THE_INTERNET = (
    *RFC1918,
    *(IPv4Network(n) for n in ("0.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "224.0.0.0/4", "240.0.0.0/4")),
)
# Names public DNS never resolves (IANA special-use domain names: RFC 6761 localhost, invalid,
# test; RFC 6762 local; RFC 8375 home.arpa; ICANN's 2024 reservation of internal).
SPECIAL_USE_DOMAINS = ("localhost", "local", "invalid", "test", "home.arpa", "internal")
# SoftEther refuses these user names, compared without case (Cedar/Account.c `IsUserName`:
# LINK_USER_NAME, LINK_USER_NAME_PRINT, SNAT_USER_NAME, BRIDGE_USER_NAME,
# ADMINISTRATOR_USERNAME), and any name starting with L3SW_ (Layer3.h `L3_USERNAME`).
SOFTETHER_RESERVED_USERS = ("link", "cascade", "securenat", "localbridge", "administrator")
SOFTETHER_RESERVED_USER_PREFIX = "l3sw_"
# Linux interface names (the kernel's dev_valid_name): fewer than IFNAMSIZ (16) bytes, no
# "/", ":" or space (the model's pattern), and not "." or "..".
_NOT_INTERFACE_NAMES = (".", "..")
# Azure: the subnets a service owns by name; our route table and NSG on them fail or break
# the service (GatewaySubnet, AzureFirewall*, AzureBastionSubnet, RouteServerSubnet).
AZURE_RESERVED_SUBNETS = (
    "gatewaysubnet",
    "azurefirewallsubnet",
    "azurefirewallmanagementsubnet",
    "azurebastionsubnet",
    "routeserversubnet",
)
# Azure's size names: Standard_<family><vCPUs>[-<constrained>][features][_<accelerator>][_v<n>]
# ("Azure virtual machine sizes naming conventions"); Basic_A0-A4 are the old basic tier. The
# SDK's VirtualMachineSizeTypes enum is deprecated and stale (no Standard_B1ls): not a catalog.
_AZURE_SIZE = re.compile(r"(Standard_[A-Z]+\d+(-\d+)?[a-z]*(_[A-Z]+\d*[A-Za-z]*)?(_v\d+)?|Basic_A\d)")
# Generation 1 only ("Support for generation 2 VMs on Azure"): the A families (v1, v2), D v1
# to v3 and E v3 without premium storage; the bridge's x64 image is Debian's 12-gen2.
_AZURE_GEN1_ONLY = re.compile(r"Basic_A\d|Standard_A\d+m?(_v2)?|Standard_D\d+(_v[23])?|Standard_E\d+(-\d+)?_v3")
# A location's name (japaneast, eastus2), not its display name ("Japan East").
_AZURE_LOCATION = re.compile(r"[a-z][a-z0-9]*")
# Azure subnet names: up to 80 letters, digits, _ . -; they end with a letter, digit or _.
_AZURE_SUBNET_END = re.compile(r".*[A-Za-z0-9_]")
# The Azure bridge's Linux computer name, `<site name>-bridge`: at most 64 characters.
AZURE_COMPUTER_NAME_MAX = 64
AZURE_COMPUTER_SUFFIX = "-bridge"
# Azure's logical availability zones, in a region that has zones.
AZURE_ZONES = ("1", "2", "3")
# An availability zone is its region's name plus a letter (ap-northeast-1a), or for a Local
# Zone plus a location (us-west-2-lax-1a).
_ZONE_SUFFIX = re.compile(r"[a-z]|-[a-z]+-\d+[a-z]")
_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def problems(stack: Stack, regions: Mapping[str, str] | None = None) -> list[str]:
    """Every cross-field problem; `regions` holds the providers' regions by cloud (from
    `aws:region` / `azure-native:location`) for sites without their own `region`, or None
    when the caller does not know them (the region rules are then skipped)."""
    return [*_network(stack.network, regions), *paas_problems(stack)]


def _network(net: Topology, regions: Mapping[str, str] | None) -> Iterator[str]:
    ranges = list(net.ranges.items())
    for path, cidr in ranges:
        if not any(cidr.subnet_of(p) for p in RFC1918):
            yield f"{path}: {cidr} is not a private (RFC 1918) range"
    for i, (path_a, a) in enumerate(ranges):
        for path_b, b in ranges[:i]:
            if a.overlaps(b):
                yield f"{path_a}: {a} overlaps {path_b} ({b})"
    if net.operator_cidr.prefixlen == 0:
        yield f"network.operatorCidr: {net.operator_cidr} would open SSH to the whole internet"
    elif hidden := next((n for n in NOT_ON_THE_INTERNET if net.operator_cidr.overlaps(n)), None):
        yield (
            f"network.operatorCidr: {net.operator_cidr} is not an internet range (it overlaps"
            f" {hidden}): the bridges see the operator's public address"
        )
    yield from _home(net)
    yield from _transit(net)
    yield from _names(net)
    yield from _paths(net)
    for i, site in enumerate(net.sites):
        path = f"network.sites[{i}]"
        yield from _site(path, site)
        yield from _cloud_site(path, site)
        if site.region:
            region: tuple[str, str] | None = (site.region, f"{path}.region")
        elif regions is None:
            region = None
        elif site.cloud in regions:
            region = (regions[site.cloud], rules(site.cloud).region_key)
        else:
            key = rules(site.cloud).region_key
            yield f"{path}.region: missing, and {key} is not set: the {site.name} site has no region"
            region = None
        if region is not None:
            yield from _region(site, *region)
            yield from _zones(path, site, *region)


def _zones(path: str, site: CloudSite, region: str, region_field: str) -> Iterator[str]:
    """Subnets' zones in the site's region: a subnet is created in its zone's region."""
    for j, subnet in enumerate(site.subnets):
        zone = subnet.zone
        if rules(site.cloud).zones and zone and not (
            zone.startswith(region) and _ZONE_SUFFIX.fullmatch(zone[len(region) :])
        ):
            yield f"{path}.subnets[{j}].zone: {zone} is not a zone of {region} (the region set by {region_field})"


def _home(net: Topology) -> Iterator[str]:
    home, server = net.home, net.home.vpn_server
    lan = next((c for c in home.cidrs if server.lan_address in c), None)
    if lan is None:
        yield (
            f"network.home.vpnServer.lanAddress: {server.lan_address} is outside the home ranges"
            f" ({', '.join(map(str, home.cidrs))})"
        )
    else:
        why = host_problem(server.lan_address, lan)
        if why:
            yield f"network.home.vpnServer.lanAddress: {server.lan_address} {why}"
        if server.host_address is not None:
            why = host_problem(server.host_address, lan)
            if why:
                yield f"network.home.vpnServer.hostAddress: {server.host_address} {why}"
            elif server.host_address == server.lan_address:
                yield (
                    f"network.home.vpnServer.hostAddress: {server.host_address} is the L3 switch's"
                    " lanAddress; the server's own NIC needs another address"
                )
    if len(home.cidrs) > 1 and home.gateway is None:
        yield (
            "network.home.gateway: missing; with more than one home range the L3 switch needs the"
            " home router's address to reach the others"
        )
    if home.gateway is not None and lan is not None:
        why = host_problem(home.gateway, lan)
        if why:
            yield f"network.home.gateway: {home.gateway} {why}"
    if server.lan_hub.lower() == net.transit.hub.lower():
        yield (
            f"network.home.vpnServer.lanHub: {server.lan_hub} is also the transit hub"
            f" ({net.transit.hub}: SoftEther compares hub names without case)"
        )
    why = _host_name_problem(server.public_host, "network.home.vpnServer.port")
    if why is None:
        why = _public_problem(server.public_host)
    if why:
        yield f"network.home.vpnServer.publicHost: {server.public_host!r} {why}"
    why = _host_name_problem(server.ssh.host, "network.home.vpnServer.ssh.port")
    if why:
        yield f"network.home.vpnServer.ssh.host: {server.ssh.host!r} {why}"
    if server.bridge_device in _NOT_INTERFACE_NAMES:
        yield f"network.home.vpnServer.bridgeDevice: {server.bridge_device!r} is not a Linux interface name"
    elif server.bridge_device == TAP_PREFIX + TAP_NAME:
        yield (
            f"network.home.vpnServer.bridgeDevice: {server.bridge_device} is the tap device"
            " SoftEther creates for a bridge; name the NIC of the home LAN"
        )
    users = [u.lower() for u in server.lan_hub_users]
    for i, user in enumerate(server.lan_hub_users):
        field = f"network.home.vpnServer.lanHubUsers[{i}]"
        if users.index(user.lower()) != i:
            yield f"{field}: {user} is not unique (SoftEther compares user names without case)"
        why = _user_problem(user)
        if why:
            yield f"{field}: {user} is {why}"


def _user_problem(user: str) -> str | None:
    """Why SoftEther refuses `user` as a user name (None if it takes it)."""
    name = user.lower()
    if name in SOFTETHER_RESERVED_USERS or name.startswith(SOFTETHER_RESERVED_USER_PREFIX):
        return "a user name SoftEther reserves (link, cascade, securenat, localbridge, administrator, L3SW_*)"
    return None


def _host_name_problem(host: str, port_field: str) -> str | None:
    """Why `host` is not a host name or an IP address to connect to (None if it is)."""
    if "://" in host or "/" in host:
        return "is a URL; give the host name alone"
    if any(c.isspace() for c in host):
        return "has spaces; a host name has none"
    if re.fullmatch(r"[^:]+:\d*", host):
        return f"carries a port; the port is {port_field}"
    try:
        ip_address(host)
        return None
    except ValueError:
        pass
    labels = host.removesuffix(".").split(".")
    if len(host) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in labels):
        if not host.isascii():
            return "is not an ASCII host name; give its IDNA form (xn--...), which SoftEther resolves"
        return "is not a host name or IP address"
    return None


def _public_problem(host: str) -> str | None:
    """Why the cloud bridges cannot reach `host` over the internet (None if they may)."""
    try:
        address = ip_address(host)
    except ValueError:
        name = host.removesuffix(".").lower()
        if "." not in name:
            return "is a single-label name; the cloud bridges resolve it in public DNS"
        special = next((d for d in SPECIAL_USE_DOMAINS if name == d or name.endswith(f".{d}")), None)
        if special:
            return f"is in .{special}, which public DNS never resolves; the cloud bridges dial it"
        return None
    hidden = next((n for n in NOT_ON_THE_INTERNET if address in n), None)
    if hidden is not None:
        return f"is not an internet address (in {hidden}); the cloud bridges dial it from their clouds"
    return None


def _transit(net: Topology) -> Iterator[str]:
    entries = [("network.home.vpnServer.transitAddress", net.home.vpn_server.transit_address)]
    for i, s in enumerate(net.sites):
        entries.append((f"network.sites[{i}].bridge.transitAddress", s.bridge.transit_address))
        if s.bridge.pair is not None:
            entries += [
                (f"network.sites[{i}].bridge.pair.transitAddresses[{j}]", a)
                for j, a in enumerate(s.bridge.pair.transit_addresses)
            ]
    seen: dict[IPv4Address, str] = {}
    for path, address in entries:
        why = host_problem(address, net.transit.cidr)
        if why:
            yield f"{path}: {address} {why} (the transit network)"
        if address in seen:
            yield f"{path}: {address} is already used by {seen[address]}"
        seen.setdefault(address, path)


def _names(net: Topology) -> Iterator[str]:
    names = [net.home.name, *(s.name for s in net.sites)]
    for i, site in enumerate(net.sites):
        if names.index(site.name) != i + 1:
            yield f"network.sites[{i}].name: {site.name} is not unique"
    # A pair's second bridge is a node of its own, `<site>-b` (model.BridgeVm).
    seconds = {vm.node: vm.site for vm in net.bridge_vms if vm.role == "b"}
    for i, site in enumerate(net.sites):
        if site.name in seconds:
            yield f"network.sites[{i}].name: {site.name} is the name of the second bridge of {seconds[site.name]}"
    users = Counter(vm.cascade_user.lower() for vm in net.bridge_vms)
    for i, site in enumerate(net.sites):
        if users[site.cascade_user.lower()] > 1:
            yield f"network.sites[{i}].bridge.cascadeUser: {site.cascade_user} is not unique"
        second = site.bridge_vms[1:]
        if second and users[second[0].cascade_user.lower()] > 1:
            yield (
                f"network.sites[{i}].bridge.cascadeUser: {site.cascade_user} gives the second bridge"
                f" the cascade user {second[0].cascade_user}, which is not unique"
            )
        why = _user_problem(site.cascade_user)
        if why and site.bridge.cascade_user is None:
            yield (
                f"network.sites[{i}].name: {site.name} gives the cascade user {site.cascade_user},"
                f" {why}: set bridge.cascadeUser"
            )
        elif why:
            yield f"network.sites[{i}].bridge.cascadeUser: {site.cascade_user} is {why}"


def _paths(net: Topology) -> Iterator[str]:
    """Each end of an allowed path names a site or one subnet of a cloud site."""
    sites = {s.name: s for s in net.sites}
    names = ", ".join([net.home.name, *sites])
    for i, p in enumerate(net.paths):
        where = f"network.paths[{i}]"
        ends: list[str] = []
        for key, ref in (("from", p.source), ("to", p.destination)):
            site, slash, subnet = ref.partition("/")
            if site == net.home.name and not slash:
                ends.append(site)
            elif site not in sites:
                yield f"{where}.{key}: {ref} is not a site of this stack ({names}) nor SITE/SUBNET of one"
            elif slash and subnet not in {s.name for s in sites[site].subnets}:
                yield f"{where}.{key}: {ref}: {subnet} is not a subnet of {site}"
            else:
                ends.append(site)
        if len(ends) == 2 and ends[0] == ends[1]:
            yield (
                f"{where}: from {p.source} to {p.destination} stays inside {ends[0]}; traffic"
                " within a site does not cross the bridges"
            )
        seen = Counter(p.ports or ())
        for port in sorted(port for port, n in seen.items() if n > 1):
            yield f"{where}.ports: {port} appears twice"


def _site(path: str, site: CloudSite) -> Iterator[str]:
    cloud = rules(site.cloud)
    seen: set[str] = set()
    for j, subnet in enumerate(site.subnets):
        sp = f"{path}.subnets[{j}]"
        if subnet.name in seen:
            yield f"{sp}.name: {subnet.name} is not unique in {site.name}"
        seen.add(subnet.name)
        if not any(subnet.cidr.subnet_of(c) for c in site.cidrs):
            yield (
                f"{sp}.cidr: {subnet.cidr} is outside the ranges of {site.name}"
                f" ({', '.join(map(str, site.cidrs))})"
            )
        if subnet.cidr.prefixlen > cloud.max_prefix:
            yield f"{sp}.cidr: {subnet.cidr} is smaller than {site.cloud} allows (/{cloud.max_prefix})"
        if subnet.cidr.prefixlen < cloud.min_prefix:
            yield f"{sp}.cidr: {subnet.cidr} is larger than {site.cloud} allows (/{cloud.min_prefix})"
        for k, other in enumerate(site.subnets[:j]):
            if subnet.cidr.overlaps(other.cidr):
                yield f"{sp}.cidr: {subnet.cidr} overlaps {path}.subnets[{k}] ({other.cidr})"
        if cloud.zones and not subnet.zone:
            yield f"{sp}.zone: missing; every {cloud.label} subnet needs an availability zone"
        if not cloud.zones and subnet.zone:
            yield f"{sp}.zone: {subnet.zone} is not used for {cloud.label} subnets (they span zones)"
    if site.cloud == "aws":
        zones = {s.zone for s in site.subnets if s.zone}
        if len(site.subnets) >= 2 and len(zones) == 1:
            yield (
                f"{path}.subnets: all in {', '.join(sorted(zones))}; an RDS subnet group needs"
                " subnets in two availability zones"
            )
    bridge = site.bridge
    subnet = next((s for s in site.subnets if s.name == bridge.subnet), None)
    if subnet is None:
        yield f"{path}.bridge.subnet: {bridge.subnet} is not a subnet of {site.name}"
        return
    why = host_problem(bridge.private_address, subnet.cidr, cloud.reserved_low)
    if why:
        yield f"{path}.bridge.privateAddress: {bridge.private_address} {why} ({site.cloud})"
    if bridge.pair is not None:
        yield from _pair(path, site, subnet)


def _pair(path: str, site: CloudSite, first: Subnet) -> Iterator[str]:
    """The second bridge of a pair: its own host in a subnet of the site, in another zone
    where the cloud's subnets have zones (one zone's outage must not take both)."""
    cloud, pair = rules(site.cloud), site.bridge.pair
    assert pair is not None
    field = f"{path}.bridge.pair"
    subnet = next((s for s in site.subnets if s.name == pair.subnet), None)
    if subnet is None:
        yield f"{field}.subnet: {pair.subnet} is not a subnet of {site.name}"
        return
    if cloud.zones and subnet.zone and subnet.zone == first.zone:
        yield (
            f"{field}.subnet: {pair.subnet} is in {subnet.zone}, the zone of the first bridge's"
            f" subnet {first.name}; the pair's bridges need two availability zones"
        )
    if pair.zones is not None:
        if cloud.zones:
            yield f"{field}.zones: {list(pair.zones)} is not used for {cloud.label} (each bridge is in its subnet's zone)"
        elif pair.zones[0] == pair.zones[1]:
            yield f"{field}.zones: {list(pair.zones)} puts both bridges in one zone"
        for j, z in enumerate(pair.zones):
            if not cloud.zones and z not in AZURE_ZONES:
                yield f"{field}.zones[{j}]: {z!r} is not an Azure availability zone ({', '.join(AZURE_ZONES)})"
    why = host_problem(pair.private_address, subnet.cidr, cloud.reserved_low)
    if why:
        yield f"{field}.privateAddress: {pair.private_address} {why} ({site.cloud})"
    elif pair.private_address == site.bridge.private_address:
        yield f"{field}.privateAddress: {pair.private_address} is the first bridge's privateAddress"




def _cloud_site(path: str, site: CloudSite) -> Iterator[str]:
    """The rules one cloud applies to a site's network and bridge."""
    match site.cloud:
        case "aws":
            yield from _aws_site(path, site)
        case "azure":
            yield from _azure_site(path, site)
        case _:
            assert_never(site.cloud)


def _aws_site(path: str, site: CloudSite) -> Iterator[str]:
    # A VPC mixes no RFC 1918 ranges: a first block in one of them restricts the others to the
    # same range ("IPv4 CIDR block association restrictions", Amazon VPC User Guide).
    cloud = rules(site.cloud)
    primary = next((r for r in RFC1918 if site.cidrs[0].subnet_of(r)), None)
    for j, cidr in enumerate(site.cidrs):
        field = f"{path}.cidrs[{j}]"
        if not cloud.min_prefix <= cidr.prefixlen <= cloud.max_prefix:
            yield f"{field}: {cidr} is not a VPC block size AWS allows (/{cloud.min_prefix} to /{cloud.max_prefix})"
        if j and primary is not None and not cidr.subnet_of(primary) and any(cidr.subnet_of(r) for r in RFC1918):
            yield (
                f"{field}: {cidr} is in another RFC 1918 range than the VPC's first block"
                f" ({site.cidrs[0]}, in {primary}); AWS refuses to mix them in one VPC"
            )
    size = site.bridge_size
    field = f"{path}.bridge.size"
    types = catalog.ec2_instance_types()
    if size not in types:
        yield f"{field}: {size} is not an EC2 instance type (catalog: {types.name})"
    elif size.startswith("mac"):
        yield f"{field}: {size} runs only macOS on a Dedicated Host; the bridge is a Debian instance"
    elif size.split(".")[0] == "t1":
        yield f"{field}: {size} has no CPU credit setting (T2 and later do); pick t3 or t4g"


def _azure_site(path: str, site: CloudSite) -> Iterator[str]:
    names = [s.name.lower() for s in site.subnets]
    for j, subnet in enumerate(site.subnets):
        field = f"{path}.subnets[{j}].name"
        first = site.subnets[names.index(subnet.name.lower())]
        if first.name != subnet.name:
            yield f"{field}: {subnet.name} is {first.name} to Azure, which compares names without case"
        if subnet.name.lower() in AZURE_RESERVED_SUBNETS:
            yield f"{field}: {subnet.name} is a subnet name an Azure service reserves; the bridge's route table and NSG do not fit it"
        if not _AZURE_SUBNET_END.fullmatch(subnet.name):
            yield f"{field}: {subnet.name} ends with {subnet.name[-1]!r}; an Azure subnet name ends with a letter, digit or _"
    size = site.bridge_size
    field = f"{path}.bridge.size"
    if not _AZURE_SIZE.fullmatch(size):
        yield f"{field}: {size} is not an Azure VM size name (Standard_<family><vCPUs>[features][_v<n>], e.g. Standard_B1ls)"
    elif _AZURE_GEN1_ONLY.fullmatch(size):
        yield f"{field}: {size} runs only generation 1 images; the bridge's image is Debian 12 gen2"
    computer = f"{site.bridge_vms[-1].node.lower()}{AZURE_COMPUTER_SUFFIX}"
    if len(computer) > AZURE_COMPUTER_NAME_MAX:
        yield (
            f"{path}.name: {site.name} makes the bridge's computer name {len(computer)} characters long;"
            f" Azure allows {AZURE_COMPUTER_NAME_MAX} for Linux"
        )


def _region(site: CloudSite, region: str, region_field: str) -> Iterator[str]:
    """The site's region is one its cloud has."""
    match site.cloud:
        case "aws":
            regions = catalog.aws_regions()
            if region not in regions:
                yield f"{region_field}: {region} is not an AWS region (catalog: {regions.name})"
        case "azure":
            if not _AZURE_LOCATION.fullmatch(region):
                yield f"{region_field}: {region!r} is not an Azure location name (lower case, no spaces: japaneast)"
        case _:
            assert_never(site.cloud)
