"""The filters in the lab: components.firewall's rules as nftables, and probes.

Two tables, kept apart as in the cloud:
- the cloud's filter (`TABLE`), outside the VM: each namespace that stands for a filtered
  cloud resource gets one table rendered from the very rules components/ turns into security
  groups and NSGs: every bridge `vpn<k>` (its SG, or its site's NSG, with Azure's default
  AllowVnetInBound after the NSG's rules) and `db` (the RDS SG). The filter sees what enters
  or leaves the resource's network interfaces (the layout's links of that namespace), as a
  cloud's filter sees its NIC; the bridge's SoftEther tap is inside the VM and is not
  filtered there. Like SGs and NSGs it is stateful (`ct state established,related`), and what
  no rule allows is dropped without an answer. In the lab the operator's internet address
  (`layout.OPERATOR`) plays the stack's `operatorCidr`;
- the bridge VM's own filter (components.firewall.bridge_ruleset, table `VM_TABLE`): the
  text the VM's cloud-init writes to /etc/nftables.conf, loaded as it is into each bridge
  namespace (a bridge that boots its cloud-init loads it itself). It holds the paths between
  the sites, on the tap side too.

`verify` proves each rule class in both directions with bounded TCP connects from the
lab's own namespaces: a connect that is answered (accepted, or refused with a reset by the
host itself) crossed the filters; one that gets no answer within `FILTERED_AFTER_S` did not.
The expected outcomes come from the stack's intent (operator, the paths between the sites,
`allowedFrom`), never from the rendered rules, so a missing or extra rule shows as a failed
check.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv4Network

from components.firewall import (
    SSH_PORT,
    WEB_PORTS,
    Firewall,
    FirewallRules,
    Rule,
    Zone,
    allowed,
    app_subnet,
    bridge_ruleset,
    firewall_rules,
    nft_set,
    site_zone,
    zone,
)
from topology import Stack

from .layout import OPERATOR, STRANGER, Host, Layout
from .node import netns_socket
from .proc import in_ns, run

TABLE = "hybrid_firewall"
# A filtered SYN gets no answer: after this long without one, the probe counts it dropped.
FILTERED_AFTER_S = 3.0
# An allowed probe may meet a busy machine (or a tunnel that just reconnected): tries.
ACCEPT_TRIES = 3


@dataclass(frozen=True)
class Guard:
    """A namespace standing for a filtered cloud resource, the interfaces its filter sees
    (its NICs) and the rules it enforces."""

    ns: str
    interfaces: tuple[str, ...]
    firewall: Firewall


def lab_rules(stack: Stack) -> FirewallRules:
    """The stack's rules with the lab operator's internet address as `operatorCidr`."""
    operator = IPv4Network(f"{OPERATOR.ip}/32")
    net = stack.network.model_copy(update={"operator_cidr": operator})
    return firewall_rules(stack.model_copy(update={"network": net}))


def guards(stack: Stack, layout: Layout) -> dict[str, Guard]:
    """Every filtered namespace of the lab, by namespace key (`vpn1`, `db`)."""
    rules = lab_rules(stack)
    ends = [e for lk in layout.links for e in ((lk.a_ns, lk.a_if), (lk.b_ns, lk.b_if))]

    def nics(ns: str) -> tuple[str, ...]:
        return tuple(sorted(i for n, i in ends if n == ns))

    out: dict[str, Guard] = {}
    for n in layout.namespaces:
        fw = rules.bridges.get(n.site) if n.role == "bridge" else None
        fw = rules.database if n.role == "db" else fw
        if fw is not None:
            out[n.key] = Guard(n.name, nics(n.name), fw)
    return out


def without(guard: Guard, rule: str) -> Guard:
    """`guard` with the ingress rule named `rule` removed (a counter-example)."""
    kept = tuple(r for r in guard.firewall.ingress if r.name != rule)
    if len(kept) == len(guard.firewall.ingress):
        raise ValueError(f"rule: {rule} is not a rule of {guard.ns}")
    return replace(guard, firewall=replace(guard.firewall, ingress=kept))


def _match(r: Rule) -> str:
    match = f"ip saddr {nft_set(r.sources)}"
    if r.destinations is not None:
        match += f" ip daddr {nft_set(r.destinations)}"
    if r.ports is not None:
        match += f" tcp dport {nft_set(r.ports)}"
    return f'{match} {"return" if r.allow else "drop"} comment "{r.name}"'


def render(guard: Guard) -> str:
    """The nftables script for `guard`: it replaces the lab's table atomically.

    The `ingress`/`egress` chains `return` what a rule allows, drop what a rule denies and
    then the rest (after what the cloud itself admits, `Firewall.implicit`); a forwarded
    packet passes both (in by one NIC, out by another), as it would pass a cloud filter.
    """
    ifs = nft_set(f'"{i}"' for i in guard.interfaces)
    fw = guard.firewall
    ingress = [_match(r) for r in fw.ingress]
    if fw.implicit:
        ingress.append(f'ip saddr {nft_set(fw.implicit)} return comment "the cloud\'s default"')
    egress = [f'ip daddr {c} return comment "egress {c}"' for c in fw.egress]

    def chain(name: str, body: list[str]) -> list[str]:
        return [f"  chain {name} {{", *(f"    {line}" for line in body), "  }"]

    def hook(name: str, body: list[str]) -> list[str]:
        return chain(name, [f"type filter hook {name} priority filter; policy accept;", *body])

    lines = [
        f"table inet {TABLE}",
        f"delete table inet {TABLE}",
        f"table inet {TABLE} {{",
        *chain("ingress", ["ct state established,related return", *ingress, "drop"]),
        *chain("egress", ["ct state established,related return", *egress, "drop"]),
        *hook("input", [f"iifname {ifs} jump ingress"]),
        *hook("forward", [f"iifname {ifs} jump ingress", f"oifname {ifs} jump egress"]),
        *hook("output", [f"oifname {ifs} jump egress"]),
        "}",
    ]
    return "\n".join(lines) + "\n"


def apply(guards: Mapping[str, Guard]) -> None:
    """Load each guard's table into its namespace (replacing the previous one)."""
    for g in guards.values():
        run(in_ns(g.ns, "nft", "-f", "-"), stdin=render(g))


def load_vm_filter(layout: Layout, ruleset: str) -> list[str]:
    """What each bridge VM's nftables.service loads (`ruleset`), in each bridge namespace;
    their keys."""
    bridges = [n for n in layout.namespaces if n.role == "bridge"]
    for n in bridges:
        run(in_ns(n.name, "nft", "-f", "-"), stdin=ruleset)
    return [n.key for n in bridges]


def enforce(stack: Stack, layout: Layout, vm_filter: bool = True) -> str:
    """Apply the stack's rules to the lab: the cloud's filters and (`vm_filter`) the bridges'
    own, which a booted bridge loads itself (its user data's nftables.service); a one-line
    summary."""
    gs = guards(stack, layout)
    apply(gs)
    n = sum(len(g.firewall.ingress) for g in gs.values())
    summary = f"{n} rules of components.firewall as nftables in {', '.join(gs)}"
    if not vm_filter:
        return f"{summary}; the bridges' own filter ({len(layout.paths)} paths): their nftables.service"
    bridges = load_vm_filter(layout, bridge_ruleset(stack))
    return f"{summary}; the bridges' own filter ({len(layout.paths)} paths) in {', '.join(bridges)}"


# --- probes ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """A TCP connect from namespace `ns` (whose address is `source`) to `host`:`port`."""

    ns: str
    source: IPv4Address
    host: IPv4Address
    port: int

    def text(self) -> str:
        return f"{self.source} -> {self.host}:{self.port}"


@dataclass(frozen=True)
class Expect:
    """One `firewall: ...` check: every probe crosses the filter (`accepted`) or none does."""

    name: str
    accepted: bool
    probes: tuple[Probe, ...]


def connect(p: Probe, timeout: float = FILTERED_AFTER_S) -> str:
    """`open`; `reset` (refused by the host: the SYN crossed the filter); `no answer` (dropped
    by a filter, the sender's own included); or the error."""
    try:
        netns_socket(p.ns, str(p.host), p.port, timeout).close()
    except ConnectionRefusedError:
        return "reset"
    except TimeoutError:
        return "no answer"
    except OSError as e:
        return e.strerror or str(e)
    return "open"


def held(accepted: bool, outcome: str) -> bool:
    """Whether a probe saw what its check wants; an error (no route...) proves neither."""
    return outcome in ("open", "reset") if accepted else outcome == "no answer"


def _zones(stack: Stack) -> list[Zone]:
    """The ends a path can name, as the lab has machines in them: home, each cloud site
    (without the App Service subnet), the App Service subnet."""
    net = stack.network
    out = [zone(stack, net.home.name), *(site_zone(stack, s) for s in net.sites)]
    app = app_subnet(stack)
    if app is not None and stack.app is not None:
        out.append(zone(stack, f"{stack.app.site}/{stack.app.subnet}"))
    return out


def expectations(stack: Stack, layout: Layout, bridge_ports: Mapping[str, int]) -> list[Expect]:
    """What the stack intends, as probes. `bridge_ports`: each bridge node's SoftEther port."""
    op = (layout.operator_ns, OPERATOR.ip)
    other = (layout.stranger_ns, STRANGER.ip)
    out: list[Expect] = []
    for node in (n for n in layout.nodes if n.kind == "bridge"):
        public, port = node.public.ip, bridge_ports[node.name]
        what = f"firewall: {node.name} bridge"
        out += [
            Expect(
                f"{what}: SSH from the operator {op[1]} accepted",
                True,
                (Probe(*op, public, SSH_PORT),),
            ),
            Expect(
                f"{what}: SSH from another internet address {other[1]} refused",
                False,
                (Probe(*other, public, SSH_PORT),),
            ),
            Expect(
                f"{what}: nothing else from the internet (SoftEther {port} refused)",
                False,
                (Probe(*op, public, port), Probe(*other, public, port)),
            ),
        ]
    out += _paths(stack, layout)
    out += _endpoint(layout)
    out += _database(stack, layout)
    return out


def _endpoint(layout: Layout) -> list[Expect]:
    """The app's private endpoint from every other site's hosts: its web port accepted where
    a path allows it (the lab serves HTTP only), and SSH only where a path gives it (home's
    default path does; the VPC's web path does not)."""
    ep = layout.endpoint
    if ep is None:
        return []
    srcs = [h for h in layout.hosts if h.site != ep.site]
    out: list[Expect] = []
    for port, what in ((WEB_PORTS[0], "HTTP"), (SSH_PORT, "SSH")):
        probes = [Probe(h.ns, h.address, ep.address, port) for h in srcs]
        for ok in (True, False):
            mine = tuple(p for p in probes if allowed(layout.paths, p.source, p.host, port) is ok)
            if mine:
                verdict = "accepted (a path)" if ok else "refused (no path)"
                out.append(
                    Expect(
                        f"firewall: the other sites -> the app's private endpoint {ep.address}:"
                        f" {what} {port} {verdict}",
                        ok,
                        mine,
                    )
                )
    return out


def _paths(stack: Stack, layout: Layout) -> list[Expect]:
    """Between every two zones of different sites, SSH to the other's hosts: accepted where a
    path allows it, refused elsewhere; and the bridges' SSH from the App Service subnet."""
    machines = [*layout.hosts, *([layout.app] if layout.app else [])]
    out: list[Expect] = []
    zones = _zones(stack)
    for a in zones:
        for b in zones:
            srcs = [m for m in machines if m.address in a]
            dsts = [h for h in layout.hosts if h.address in b]
            if a.site == b.site or not srcs or not dsts:
                continue  # within a site: the site's own network, no bridge on the way
            probes = [Probe(m.ns, m.address, h.address, SSH_PORT) for m in srcs for h in dsts]
            for ok in (True, False):
                mine = tuple(
                    p for p in probes if allowed(layout.paths, p.source, p.host, SSH_PORT) is ok
                )
                if mine:
                    verdict = "accepted (a path)" if ok else "refused (no path)"
                    out.append(
                        Expect(f"firewall: {a.label} -> {b.label}: SSH {verdict}", ok, mine)
                    )
    app = zones[-1] if app_subnet(stack) else None
    srcs = [m for m in machines if app is not None and m.address in app]
    bridges = [vm.private_address for vm in stack.network.bridge_vms]
    if app is not None and srcs:
        probes = tuple(Probe(m.ns, m.address, b, SSH_PORT) for m in srcs for b in bridges)
        expect = any(allowed(layout.paths, p.source, p.host, SSH_PORT) for p in probes)
        out.append(
            Expect(
                f"firewall: {app.label} -> the bridges' SSH"
                f" ({', '.join(map(str, bridges))}): {'accepted' if expect else 'refused'}",
                expect,
                probes,
            )
        )
    return out


def _database(stack: Stack, layout: Layout) -> list[Expect]:
    """The RDS SG: MySQL from the sites of `allowedFrom` and the App Service subnet only."""
    db, cfg = layout.db, stack.database
    if db is None or cfg is None:
        return []
    net = stack.network
    out: list[Expect] = []
    machines: list[Host] = [*layout.hosts, *([layout.app] if layout.app else [])]
    allowed_cidrs: list[IPv4Network] = []
    for name in cfg.allowed_from:
        for cidr in net.home.cidrs if name == net.home.name else net.site(name).cidrs:
            allowed_cidrs.append(cidr)
            inside = [h for h in machines if h.address in cidr]
            if inside:
                out.append(
                    Expect(
                        f"firewall: database: MySQL {cfg.port} from {name} {cidr} accepted",
                        True,
                        tuple(Probe(h.ns, h.address, db.address, cfg.port) for h in inside),
                    )
                )
    app = app_subnet(stack)
    if app is not None and not any(app[1].subnet_of(c) for c in allowed_cidrs):
        allowed_cidrs.append(app[1])
        inside = [h for h in machines if h.address in app[1]]
        out.append(
            Expect(
                f"firewall: database: MySQL {cfg.port} from the App Service subnet {app[1]} accepted",
                True,
                tuple(Probe(h.ns, h.address, db.address, cfg.port) for h in inside),
            )
        )
    outside = [h for h in layout.hosts if not any(h.address in c for c in allowed_cidrs)]
    if outside:
        sites = ", ".join(dict.fromkeys(h.site for h in outside))
        out.append(
            Expect(
                f"firewall: database: MySQL {cfg.port} from the other sites refused ({sites})",
                False,
                tuple(Probe(h.ns, h.address, db.address, cfg.port) for h in outside),
            )
        )
    inside = [h for h in machines if any(h.address in c for c in allowed_cidrs)]
    if inside:
        out.append(
            Expect(
                f"firewall: database: only MySQL from the allowed sites (SSH {SSH_PORT} refused)",
                False,
                tuple(Probe(h.ns, h.address, db.address, SSH_PORT) for h in inside),
            )
        )
    neighbour = next((h for h in layout.hosts if h.site == db.site), None)
    if neighbour is not None:
        out.append(
            Expect(
                "firewall: database: starts no connection",
                False,
                (Probe(db.ns, db.address, neighbour.address, SSH_PORT),),
            )
        )
    return out


def verify(
    stack: Stack, layout: Layout, bridge_ports: Mapping[str, int]
) -> list[tuple[Expect, bool, str]]:
    """Run every expectation's probes in parallel: (expectation, held, what was seen)."""
    todo = expectations(stack, layout, bridge_ports)

    def one(item: tuple[Probe, bool]) -> str:
        probe, accepted = item
        outcome = connect(probe)
        for _ in range(ACCEPT_TRIES - 1):
            if not accepted or held(True, outcome):
                break
            outcome = connect(probe)
        return outcome

    items = [(p, e.accepted) for e in todo for p in e.probes]
    with ThreadPoolExecutor(max_workers=min(32, max(1, len(items)))) as pool:
        seen = dict(zip(items, pool.map(one, items), strict=True))
    out = []
    for e in todo:
        outcomes = [seen[(p, e.accepted)] for p in e.probes]
        ok = all(held(e.accepted, o) for o in outcomes)
        detail = ", ".join(f"{p.text()} {o}" for p, o in zip(e.probes, outcomes, strict=True))
        out.append((e, ok, detail))
    return out
