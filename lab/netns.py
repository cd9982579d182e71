"""Building and deleting the lab's namespaces, links, addresses and routes (iproute2).

Every step is idempotent (`ip ... replace`, links created only when missing), so `lab up`
on a running lab repairs instead of failing. Veth pairs are created directly inside their two
namespaces (`ip link add NAME netns A type veth peer name P netns B`): no interface, address
or route of the lab ever exists in the root namespace.
"""

from __future__ import annotations

from collections.abc import Sequence

from .layout import Layout, Link, Namespace
from .proc import exists, in_ns, run

OFFLOADS = ("rx", "tx", "tso", "gso", "gro")


def _batch(ns: str, lines: list[str]) -> None:
    if lines:
        run(["ip", "-n", ns, "-batch", "-"], stdin="\n".join(lines) + "\n")


def _links_of(ns: str) -> set[str]:
    out = run(["ip", "-n", ns, "-o", "link", "show"])
    # "3: eth0@if2: <...>" -> eth0
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line}


def build(layout: Layout) -> list[str]:
    """Create what is missing; return the namespaces created by this call."""
    created = []
    for n in layout.namespaces:
        if not exists(n.name):
            run(["ip", "netns", "add", n.name])
            created.append(n.name)
    have = {n.name: _links_of(n.name) for n in layout.namespaces}
    for n in layout.namespaces:
        _batch(
            n.name, [f"link add {sw} type bridge" for sw, _ in n.switches if sw not in have[n.name]]
        )
    for lk in layout.links:
        if lk.a_if not in have[lk.a_ns]:
            if lk.b_if in have[lk.b_ns]:  # half of a pair left by a crash
                run(["ip", "-n", lk.b_ns, "link", "del", lk.b_if])
            run(
                [
                    "ip",
                    "link",
                    "add",
                    lk.a_if,
                    "netns",
                    lk.a_ns,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    lk.b_if,
                    "netns",
                    lk.b_ns,
                ]
            )
    for n in layout.namespaces:
        _batch(n.name, _config(n, layout.links))
        sysctls = ["net.ipv4.ip_forward=1"] if n.forwarding else []
        sysctls += ["net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0"]
        if n.role == "router":
            # A cloud's VPC router sends no ICMP redirects: a host redirected to a pair's old
            # bridge would keep that for 300 s after the failover moved the routes.
            devices = ("all", "default", *(sw for sw, _ in n.switches))
            sysctls += [f"net.ipv4.conf.{d}.send_redirects=0" for d in devices]
        run(in_ns(n.name, "sysctl", "-qw", *sysctls))
    for lk in layout.links:
        if lk.offloads_off:
            for ns, ifname in ((lk.a_ns, lk.a_if), (lk.b_ns, lk.b_if)):
                run(in_ns(ns, "ethtool", "-K", ifname, *[w for o in OFFLOADS for w in (o, "off")]))
    for n in layout.namespaces:
        _batch(n.name, _routes(n))
    return created


def _config(n: Namespace, links: tuple[Link, ...]) -> list[str]:
    lines = ["link set lo up"]
    for sw, addr in n.switches:
        lines += [f"addr replace {addr} dev {sw}"] if addr is not None else []
        lines.append(f"link set {sw} up")
    for lk in links:
        for ns, ifname, addr, switch in (
            (lk.a_ns, lk.a_if, lk.a_addr, None),
            (lk.b_ns, lk.b_if, lk.b_addr, lk.b_switch),
        ):
            if ns != n.name:
                continue
            if switch:
                lines.append(f"link set {ifname} master {switch}")
            if addr is not None:
                lines.append(f"addr replace {addr} dev {ifname}")
            lines.append(f"link set {ifname} up")
    return lines


def _routes(n: Namespace) -> list[str]:
    return [f"route replace {r.destination or 'default'} via {r.via}" for r in n.routes]


def delete(names: Sequence[str]) -> list[str]:
    """Delete these namespaces (their veths go with them); return the ones that existed."""
    gone = []
    for ns in names:
        if exists(ns):
            run(["ip", "netns", "delete", ns])
            gone.append(ns)
    return gone
