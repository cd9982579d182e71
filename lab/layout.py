"""The lab's network, derived from a stack: namespaces, links, addresses and routes. Pure.

One network namespace per machine of the reference network:
- `inet`: the "internet", a Linux bridge joining the public sides on 198.51.100.0/24 (a
  documentation range); it is also where the operator stands (SSH to the nodes' public
  addresses), as the operator reaches the cloud bridges over the internet;
- `www`: someone else on the internet (the bridges' firewall refuses what it sends);
- `vpn0`: the home VPN Server, eth0 on the internet, eth1 bridged by hub DEFAULT into the home
  LAN (no address, offloads off);
- `lan0`: a home LAN host, routing the hybrid ranges via the L3 switch (the plan's home routes);
- per cloud site k: `vpn<k>` the bridge VM (eth0 public, eth1 its fixed private address, a
  default route via the subnet's .1 like a cloud VM), and `vpn<k>b` a pair's second bridge,
  `rtr<k>` the VPC/VNet router (.1 of every
  subnet; its routes are the site's cloud route table: every remote range via the bridge's
  private address, a pair's first), one host `s<k>n<j>` per subnet (default route via .1);
- PaaS stand-ins: `db` (MariaDB for RDS, in the DB site's bridge subnet, the blog's .225) and
  `app` (WordPress for App Service): its own connections leave from the app's delegated
  subnet (Regional VNet Integration carries outbound traffic only); it is reached at its
  private endpoint (`endpoint`), an address in the bridge's subnet of the same site, which
  the paths let home reach (an App Service private endpoint is a NIC in a regular subnet).

Addresses are the stack's own; they exist only inside these namespaces.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from components.firewall import Flow, flows
from topology import CloudSite, Stack, Subnet, plan_routes
from topology.clouds import CLOUDS
from topology.model import interface

INTERNET = IPv4Network("198.51.100.0/24")
OPERATOR = IPv4Interface("198.51.100.254/24")
SERVER_PUBLIC = IPv4Interface("198.51.100.1/24")
STRANGER = IPv4Interface("198.51.100.253/24")
# The blog's RDS endpoint resolved to .225 of Hybrid-Subnet; App Service and plain hosts get
# the first free address from .10 (clouds reserve .0-.3 and the broadcast address).
DB_OFFSET = 225
APP_OFFSET = 20
ENDPOINT_IF = "eth1"
HOST_OFFSET = 10
# The lowest host offset no cloud reserves (topology.clouds); the home LAN's hosts keep to it too.
LOWEST_HOST = max(c.reserved_low for c in CLOUDS)
# Interface names inside the namespaces (the kernel limit is 15 characters).
PUBLIC_IF = "eth0"
PRIVATE_IF = "eth1"
SWITCH = "br0"


@dataclass(frozen=True)
class Route:
    destination: IPv4Network | None  # None: the default route
    via: IPv4Address


@dataclass(frozen=True)
class Link:
    """A veth pair. An end with `switch` is enslaved to that Linux bridge in its namespace."""

    a_ns: str
    a_if: str
    b_ns: str
    b_if: str
    a_addr: IPv4Interface | None = None
    b_addr: IPv4Interface | None = None
    b_switch: str | None = None
    # Offloads off on both ends: a raw-socket bridge (SoftEther's local bridge) needs it.
    offloads_off: bool = False


@dataclass(frozen=True)
class Namespace:
    """One machine. `role`: inet, stranger, server, lan, bridge, router, host, db, app."""

    key: str  # short, stable: `vpn0`, `s1n2`, ...
    name: str  # the netns name: `hc-<lab id>-<key>`
    role: str
    site: str
    routes: tuple[Route, ...] = ()
    forwarding: bool = False
    switches: tuple[tuple[str, IPv4Interface | None], ...] = ()  # Linux bridges: name, address


@dataclass(frozen=True)
class Host:
    """A plain machine in a site: the matrix pings between these."""

    ns: str
    site: str
    subnet: str
    address: IPv4Address


@dataclass(frozen=True)
class VpnNode:
    ns: str
    kind: str  # "server" | "bridge"
    site: str
    public: IPv4Interface
    # The node's name (model.BridgeVm.node; the home server's: the home site's), which keys
    # it in the specs and the lab; a site's first bridge is named after the site.
    name: str
    private: IPv4Address | None = None  # a bridge's fixed address in its subnet


@dataclass(frozen=True)
class Layout:
    lab_id: str
    stack: str
    namespaces: tuple[Namespace, ...]
    links: tuple[Link, ...]
    hosts: tuple[Host, ...]
    nodes: tuple[VpnNode, ...]
    db: Host | None
    app: Host | None
    operator_ns: str
    stranger_ns: str
    # The paths the stack allows between its sites (components.firewall.flows).
    paths: tuple[Flow, ...] = ()
    # Where the app is reached (its private endpoint): in the app's namespace, see `_endpoint`.
    endpoint: Host | None = None

    def ns(self, key: str) -> Namespace:
        return next(n for n in self.namespaces if n.key == key)

    def node(self, name: str) -> VpnNode:
        """The VPN node named `name` (a site's name: its server or first bridge)."""
        return next(n for n in self.nodes if n.name == name)

    def router(self, site: str) -> Namespace:
        """The VPC/VNet router of a cloud site: its routes are the site's route table."""
        return next(n for n in self.namespaces if n.role == "router" and n.site == site)

    def public_link(self, name: str) -> Link:
        """The veth joining a VPN node to the internet (its inet end is `b_if`)."""
        node = self.node(name)
        return next(lk for lk in self.links if lk.a_ns == node.ns and lk.a_if == PUBLIC_IF)

    @property
    def sites(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(h.site for h in self.hosts))


def lab_id(key: str) -> str:
    """Four hex digits from the lab's directory: stable across runs, distinct between labs."""
    return hashlib.sha1(key.encode()).hexdigest()[:4]


def pick(cidr: IPv4Network, offset: int, taken: set[IPv4Address]) -> IPv4Address:
    """`cidr`'s address at `offset` if free, else the next free one (wrapping to `LOWEST_HOST`)."""
    size = cidr.num_addresses
    usable = range(LOWEST_HOST, size - 1)  # below it and the broadcast address: the cloud's
    if not usable:
        raise ValueError(f"{cidr} has no usable host address")
    start = offset if offset in usable else usable.start
    for i in range(len(usable)):
        o = usable.start + (start - usable.start + i) % len(usable)
        a = cidr.network_address + o
        if a not in taken:
            taken.add(a)
            return a
    raise ValueError(f"{cidr} has no free host address left")


def _gateway(cidr: IPv4Network) -> IPv4Interface:
    # AWS's VPC router and Azure's default gateway are .1 of every subnet.
    return interface(cidr.network_address + 1, cidr)


def build_layout(stack: Stack, stack_ref: str, lid: str) -> Layout:
    """The lab of `stack`; `lid` (see `lab_id`) prefixes every namespace: `hc-<lid>-<key>`."""
    net = stack.network
    plan = plan_routes(net)

    def nsname(key: str) -> str:
        return f"hc-{lid}-{key}"

    taken: set[IPv4Address] = {net.home.vpn_server.lan_address}
    if net.home.vpn_server.host_address is not None:
        taken.add(net.home.vpn_server.host_address)
    for s in net.sites:
        taken |= {vm.private_address for vm in s.bridge_vms}
        taken |= {sub.cidr.network_address + 1 for sub in s.subnets}

    inet = Namespace("inet", nsname("inet"), "inet", "internet", switches=((SWITCH, OPERATOR),))
    server = Namespace("vpn0", nsname("vpn0"), "server", net.home.name)
    lan_cidr = next(c for c in net.home.cidrs if net.home.vpn_server.lan_address in c)
    lan_addr = pick(lan_cidr, HOST_OFFSET, taken)
    lan = Namespace(
        "lan0",
        nsname("lan0"),
        "lan",
        net.home.name,
        routes=tuple(Route(r.destination, r.via) for r in plan.home_routes),
    )
    www = Namespace("www", nsname("www"), "stranger", "internet")
    namespaces: list[Namespace] = [inet, www, server, lan]
    links: list[Link] = [
        Link(www.name, PUBLIC_IF, inet.name, "pw", STRANGER, b_switch=SWITCH),
        Link(server.name, PUBLIC_IF, inet.name, "p0", SERVER_PUBLIC, b_switch=SWITCH),
        Link(
            server.name,
            net.home.vpn_server.bridge_device,
            lan.name,
            PUBLIC_IF,
            b_addr=interface(lan_addr, lan_cidr),
            offloads_off=True,
        ),
    ]
    hosts = [Host(lan.name, net.home.name, "lan", lan_addr)]
    nodes = [VpnNode(server.name, "server", net.home.name, SERVER_PUBLIC, net.home.name)]

    db_site = stack.database.site if stack.database else None
    app_where = (stack.app.site, stack.app.subnet) if stack.app else None
    db: Host | None = None
    app: Host | None = None
    endpoint: Host | None = None
    for k, site in enumerate(net.sites, start=1):
        bridge_sub = site.subnet(site.bridge.subnet)
        table = plan.route_table(site.name)
        router = Namespace(
            f"rtr{k}",
            nsname(f"rtr{k}"),
            "router",
            site.name,
            routes=tuple(Route(d, table.bridge_address) for d in table.destinations),
            forwarding=True,
            switches=tuple((f"sw{j}", _gateway(sub.cidr)) for j, sub in enumerate(site.subnets)),
        )
        namespaces.append(router)
        for vm in site.bridge_vms:
            # A pair's second bridge: `vpn<k>b`, its public address 100 above the first's.
            suffix = "b" if vm.role == "b" else ""
            public = IPv4Interface(
                f"{INTERNET.network_address + 10 + k + (100 if suffix else 0)}/{INTERNET.prefixlen}"
            )
            sub = site.subnet(vm.subnet)
            bridge = Namespace(
                f"vpn{k}{suffix}",
                nsname(f"vpn{k}{suffix}"),
                "bridge",
                site.name,
                routes=(Route(None, _gateway(sub.cidr).ip),),
                forwarding=True,
            )
            namespaces.append(bridge)
            nodes.append(VpnNode(bridge.name, "bridge", site.name, public, vm.node, vm.private_address))
            links.append(Link(bridge.name, PUBLIC_IF, inet.name, f"p{k}{suffix}", public, b_switch=SWITCH))
            links.append(
                Link(
                    bridge.name,
                    PRIVATE_IF,
                    router.name,
                    f"b{_sw(site, sub)}{suffix}",
                    interface(vm.private_address, sub.cidr),
                    b_switch=f"sw{_sw(site, sub)}",
                )
            )
        machines = [(f"s{k}n{j}", "host", sub, HOST_OFFSET) for j, sub in enumerate(site.subnets)]
        if site.name == db_site:
            machines.append(("db", "db", bridge_sub, DB_OFFSET))
        if app_where and site.name == app_where[0]:
            machines.append(("app", "app", site.subnet(app_where[1]), APP_OFFSET))
        for key, role, sub, offset in machines:
            ns, link, host = _host(key, nsname(key), role, site, sub, router, offset, taken)
            namespaces.append(ns)
            links.append(link)
            if role == "host":
                hosts.append(host)
            elif role == "db":
                db = host
            else:
                app = host
                endpoint, link = _endpoint(host, stack, site, bridge_sub, router, taken)
                links.append(link)
    return Layout(
        lab_id=lid,
        stack=stack_ref,
        namespaces=tuple(namespaces),
        links=tuple(links),
        hosts=tuple(hosts),
        nodes=tuple(nodes),
        db=db,
        app=app,
        operator_ns=inet.name,
        stranger_ns=www.name,
        paths=flows(stack),
        endpoint=endpoint,
    )


def _sw(site: CloudSite, sub: Subnet) -> int:
    return next(j for j, s in enumerate(site.subnets) if s.name == sub.name)


def _host(
    key: str,
    name: str,
    role: str,
    site: CloudSite,
    sub: Subnet,
    router: Namespace,
    offset: int,
    taken: set[IPv4Address],
) -> tuple[Namespace, Link, Host]:
    """A machine in a cloud subnet: default route via the subnet's .1, as a cloud VM gets."""
    addr = pick(sub.cidr, offset, taken)
    ns = Namespace(key, name, role, site.name, routes=(Route(None, _gateway(sub.cidr).ip),))
    j = _sw(site, sub)
    link = Link(
        name, PUBLIC_IF, router.name, f"{key}", interface(addr, sub.cidr), b_switch=f"sw{j}"
    )
    return ns, link, Host(name, site.name, sub.name, addr)


def _endpoint(
    app: Host,
    stack: Stack,
    site: CloudSite,
    bridge_sub: Subnet,
    router: Namespace,
    taken: set[IPv4Address],
) -> tuple[Host, Link]:
    """The app's private endpoint: a second interface of the app's namespace holding one
    address (/32), the program's (`Stack.app_endpoint`: its subnet and address). No route of
    the namespace uses it, so the app's own connections keep leaving from its delegated subnet
    (the paths keep those to the database); the endpoint only answers, by the app's default
    route (every lab namespace has rp_filter off), as the bridge forwarded the request to it on
    its own subnet. A public app (no endpoint in the cloud) is served the same way, on the
    bridge's subnet: the lab has no public App Service door (README)."""
    where = stack.app_endpoint
    sub = site.subnet(where.subnet) if where is not None else bridge_sub
    addr = where.address if where is not None else pick(sub.cidr, APP_OFFSET, taken)
    taken.add(addr)
    link = Link(
        app.ns,
        ENDPOINT_IF,
        router.name,
        "appe",
        IPv4Interface(f"{addr}/32"),
        b_switch=f"sw{_sw(site, sub)}",
    )
    return Host(app.ns, site.name, sub.name, addr), link
