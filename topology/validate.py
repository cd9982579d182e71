"""Cross-field rules of a stack, each reported as one line: `<field path>: <value> <problem>`.

Every rule runs (no stop at the first problem), so a user sees all of them at once.
"""

from __future__ import annotations

import datetime
import re
from collections import Counter
from collections.abc import Iterator, Mapping
from ipaddress import IPv4Address, IPv4Network, ip_address

from .clouds import rules
from .model import CloudSite, Stack, Topology

RFC1918 = tuple(IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))

# Each threshold becomes an actual and a forecasted alert: AWS allows 10 notifications per
# budget and 10 subscribers per notification, Azure 5 notifications per budget.
AWS_MAX_ALERTS, AWS_MAX_SUBSCRIBERS, AZURE_MAX_ALERTS = 5, 10, 2
# RDS for MySQL major versions and the end of their RDS standard support; after it, RDS
# enrolls the instance in Extended Support, billed per vCPU-hour on top of the instance. From
# AWS's "Supported MySQL major versions on Amazon RDS" (read 2026-12): 5.7 ended 2024-02-29,
# 8.0 2026-07-31; 8.4 (LTS) runs to 2029-07-31.
RDS_MYSQL_STANDARD_SUPPORT = {
    "5.7": datetime.date(2024, 2, 29),
    "8.0": datetime.date(2026, 7, 31),
    "8.4": datetime.date(2029, 7, 31),
}
# An availability zone is its region's name plus a letter (ap-northeast-1a), or for a Local
# Zone plus a location (us-west-2-lax-1a).
_ZONE_SUFFIX = re.compile(r"[a-z]|-[a-z]+-\d+[a-z]")
_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def problems(stack: Stack, regions: Mapping[str, str] | None = None) -> list[str]:
    """Every cross-field problem; `regions` holds the providers' regions by cloud (from
    `aws:region` / `azure-native:location`) for sites without their own `region`."""
    return [*_network(stack.network, regions or {}), *_paas(stack)]


def _network(net: Topology, regions: Mapping[str, str]) -> Iterator[str]:
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
    yield from _home(net)
    yield from _transit(net)
    yield from _names(net)
    yield from _paths(net)
    for i, site in enumerate(net.sites):
        path = f"network.sites[{i}]"
        yield from _site(path, site)
        if site.region:
            yield from _zones(path, site, site.region, f"{path}.region")
        elif site.cloud in regions:
            yield from _zones(path, site, regions[site.cloud], rules(site.cloud).region_key)


def _zones(path: str, site: CloudSite, region: str, region_field: str) -> Iterator[str]:
    """Subnets' zones in the site's region: a subnet is created in its zone's region."""
    for j, subnet in enumerate(site.subnets):
        zone = subnet.zone
        if rules(site.cloud).zones and zone and not (
            zone.startswith(region) and _ZONE_SUFFIX.fullmatch(zone[len(region) :])
        ):
            yield f"{path}.subnets[{j}].zone: {zone} is not a zone of {region} (the region set by {region_field})"


def _host_problem(address: IPv4Address, cidr: IPv4Network, low: int = 1) -> str | None:
    """Why `address` cannot be a host in `cidr` (None if it can)."""
    if address not in cidr:
        return f"is outside {cidr}"
    offset = int(address) - int(cidr.network_address)
    if offset < low or address == cidr.broadcast_address:
        return f"is a reserved address of {cidr}"
    return None


def _home(net: Topology) -> Iterator[str]:
    home, server = net.home, net.home.vpn_server
    lan = next((c for c in home.cidrs if server.lan_address in c), None)
    if lan is None:
        yield (
            f"network.home.vpnServer.lanAddress: {server.lan_address} is outside the home ranges"
            f" ({', '.join(map(str, home.cidrs))})"
        )
    else:
        why = _host_problem(server.lan_address, lan)
        if why:
            yield f"network.home.vpnServer.lanAddress: {server.lan_address} {why}"
        if server.host_address is not None:
            why = _host_problem(server.host_address, lan)
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
        why = _host_problem(home.gateway, lan)
        if why:
            yield f"network.home.gateway: {home.gateway} {why}"
    if server.lan_hub == net.transit.hub:
        yield f"network.home.vpnServer.lanHub: {server.lan_hub} is also the transit hub"
    why = _host_name_problem(server.public_host)
    if why:
        yield f"network.home.vpnServer.publicHost: {server.public_host!r} {why}"


def _host_name_problem(host: str) -> str | None:
    """Why the cascades cannot dial `host` as a SoftEther server address (None if they can)."""
    if "://" in host or "/" in host:
        return "is a URL; give the host name alone"
    if any(c.isspace() for c in host):
        return "has spaces; a host name has none"
    if re.fullmatch(r"[^:]+:\d*", host):
        return "carries a port; the port is network.home.vpnServer.port"
    try:
        ip_address(host)
        return None
    except ValueError:
        pass
    labels = host.removesuffix(".").split(".")
    if len(host) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in labels):
        return "is not a host name or IP address"
    return None


def _transit(net: Topology) -> Iterator[str]:
    entries = [("network.home.vpnServer.transitAddress", net.home.vpn_server.transit_address)]
    entries += [
        (f"network.sites[{i}].bridge.transitAddress", s.bridge.transit_address)
        for i, s in enumerate(net.sites)
    ]
    seen: dict[IPv4Address, str] = {}
    for path, address in entries:
        why = _host_problem(address, net.transit.cidr)
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
    users = Counter(s.cascade_user.lower() for s in net.sites)
    for i, site in enumerate(net.sites):
        if users[site.cascade_user.lower()] > 1:
            yield f"network.sites[{i}].bridge.cascadeUser: {site.cascade_user} is not unique"


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
    why = _host_problem(bridge.private_address, subnet.cidr, cloud.reserved_low)
    if why:
        yield f"{path}.bridge.privateAddress: {bridge.private_address} {why} ({site.cloud})"


def _paas(stack: Stack) -> Iterator[str]:
    net = stack.network
    sites = {s.name: s for s in net.sites}
    db, app, budgets = stack.database, stack.app, stack.budgets
    if db is not None:
        site = sites.get(db.site)
        if site is None or site.cloud != "aws":
            yield f"database.site: {db.site} is not an AWS site of this stack"
        elif len({s.zone for s in site.subnets}) < 2:
            yield f"database.site: {db.site} has no subnets in two availability zones (RDS needs them)"
        yield from _engine_version(db.engine_version)
        for i, name in enumerate(db.allowed_from):
            if name not in sites and name != net.home.name:
                yield f"database.allowedFrom[{i}]: {name} is not a site of this stack"
    if app is not None:
        site = sites.get(app.site)
        if site is None or site.cloud != "azure":
            yield f"app.site: {app.site} is not an Azure site of this stack"
        elif app.subnet not in {s.name for s in site.subnets}:
            yield f"app.subnet: {app.subnet} is not a subnet of {app.site}"
        elif app.subnet == site.bridge.subnet:
            yield (
                f"app.subnet: {app.subnet} holds the bridge VM; VNet integration needs a subnet"
                " delegated to Microsoft.Web/serverFarms alone"
            )
    if app is not None and db is None:
        yield "app: set without database; WordPress needs the database of this stack"
    if budgets is not None and budgets.enabled:
        if not budgets.emails:
            yield "budgets.emails: empty; an alert needs somebody to receive it"
        if len(budgets.emails) > AWS_MAX_SUBSCRIBERS:
            yield f"budgets.emails: {len(budgets.emails)} addresses; AWS allows {AWS_MAX_SUBSCRIBERS} per alert"
        for i, b in enumerate(budgets.aws):
            yield from _thresholds(f"budgets.aws[{i}].thresholds", b.thresholds, AWS_MAX_ALERTS)
        if budgets.azure is not None:
            if not any(s.cloud == "azure" for s in net.sites):
                yield "budgets.azure: set but the stack has no Azure site"
            start = budgets.azure.start_date
            if start is not None and start.day != 1:
                yield (
                    f"budgets.azure.startDate: {start} is not the first day"
                    " of a month (Azure requires it)"
                )
            for i, b in enumerate(budgets.azure.budgets):
                yield from _thresholds(
                    f"budgets.azure.budgets[{i}].thresholds", b.thresholds, AZURE_MAX_ALERTS
                )
        names = [b.name for b in budgets.aws]
        for i, name in enumerate(names):
            if names.index(name) != i:
                yield f"budgets.aws[{i}].name: {name} is not unique"


def _engine_version(version: str) -> Iterator[str]:
    """RDS for MySQL, within standard support today (UTC): after it, Extended Support bills."""
    supported = [v for v, end in RDS_MYSQL_STANDARD_SUPPORT.items() if end >= _today()]
    match = re.fullmatch(r"(\d+\.\d+)(\.\d+.*)?", version)
    if match is None:
        yield f"database.engineVersion: {version} is not a MySQL version ({supported[-1]}, or {supported[-1]}.<minor>)"
        return
    end = RDS_MYSQL_STANDARD_SUPPORT.get(match[1])
    if end is None:
        yield (
            f"database.engineVersion: {version} is not an RDS for MySQL major version in standard"
            f" support ({', '.join(supported)})"
        )
    elif end < _today():
        yield (
            f"database.engineVersion: {version} is past RDS standard support (ended {end}): RDS"
            f" bills Extended Support for it; use {supported[-1]}"
        )


def _today() -> datetime.date:
    return datetime.datetime.now(datetime.UTC).date()


def _thresholds(path: str, values: tuple[float, ...], most: int) -> Iterator[str]:
    if len(values) > most:
        yield f"{path}: {len(values)} thresholds; at most {most} fit (an actual and a forecast alert each)"
    for i, v in enumerate(values):
        if not 0 < v <= 1000:
            yield f"{path}[{i}]: {v:g} is not a percentage between 0 and 1000"
