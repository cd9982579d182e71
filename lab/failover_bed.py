"""A test bed for the failover controller: one cloud site with a bridge pair, in namespaces.

    lan (192.168.1.249) ── home (the L3 switch: 192.168.1.1, transit 192.168.10.1)
                              │ transit: hub HYBRID's stand-in, a Linux bridge br0 in `hub`
           ┌── cascade (TCP over the bed's internet 198.51.100.0/24, lab/frame_relay.py) ──┐
          bra (tap_bridge 192.168.10.12, eth1 192.168.20.12)      brb (…10.13, …20.13)
                 └────────────── rtr (the VPC router, 192.168.20.1) ──────────────┘
                                        s1 (192.168.20.100)

The real controller (`python -m softether.failover`, standard library only) runs in `bra`
and `brb` with the lab driver on `rtr`; the home side reaches the site through the vip
192.168.10.2 (its route to 192.168.20.0/24). The cascades are frame relays (no SoftEther
here: the bed is about the controller; a lab with bridge pairs runs the same faults against
real SoftEther through `lab.failover.Side`). Built by `lab.netns.build` from a `Layout`,
deleted by `lab.netns.delete`; nothing outside these namespaces.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

from . import netns
from .failover import Side
from .layout import Layout, Link, Namespace, Route
from .node import run_id
from .proc import LabError, alive, cmdline, in_ns, kill_all_in, pids_in, run, sh, stop

ROOT = Path(__file__).resolve().parents[1]
TAP = "tap_bridge"
VIP = IPv4Interface("192.168.10.2/24")
VIP_MAC = "02:48:43:00:00:02"
HOME_LAN = IPv4Network("192.168.1.0/24")
PROBE = IPv4Address("192.168.1.249")
SITE_HOST = IPv4Address("192.168.20.100")
HUB_PUBLIC = IPv4Interface("198.51.100.1/24")
CASCADE_PORT = 5555
BRIDGES = {
    "a": (IPv4Interface("198.51.100.12/24"), IPv4Interface("192.168.10.12/24"), IPv4Interface("192.168.20.12/24")),
    "b": (IPv4Interface("198.51.100.13/24"), IPv4Interface("192.168.10.13/24"), IPv4Interface("192.168.20.13/24")),
}
MARK = "HYBRID_FAILOVER_BED"


@dataclass
class Bed:
    """`with Bed(directory) as bed:` builds it, starts relays and controllers, and tears all
    down however the block ends."""

    directory: Path
    interval_s: float = 1.0
    fail_after: int = 3
    recover_after: int = 10
    preferred: str | None = "a"
    run: str = field(default_factory=run_id)
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    def ns(self, key: str) -> str:
        return f"hc-{self.run}-f{key}"

    def layout(self) -> Layout:
        n = self.ns
        spaces = [
            Namespace("hub", n("hub"), "inet", "hub", switches=(("inet0", HUB_PUBLIC), ("br0", None))),
            Namespace("home", n("home"), "server", "home", routes=(Route(IPv4Network("192.168.20.0/24"), VIP.ip),), forwarding=True),
            Namespace("lan", n("lan"), "host", "home", routes=(Route(None, IPv4Address("192.168.1.1")),)),
            Namespace("rtr", n("rtr"), "router", "vpc", routes=(Route(HOME_LAN, BRIDGES["a"][2].ip),), forwarding=True,
                      switches=(("rbr0", IPv4Interface("192.168.20.1/24")),)),
            Namespace("s1", n("s1"), "host", "vpc", routes=(Route(None, IPv4Address("192.168.20.1")),)),
        ]
        links = [
            Link(n("home"), "eth0", n("hub"), "ph", IPv4Interface("192.168.10.1/24"), None, "br0"),
            Link(n("home"), "eth1", n("lan"), "eth0", IPv4Interface("192.168.1.1/24"), IPv4Interface(f"{PROBE}/24")),
            Link(n("s1"), "eth0", n("rtr"), "rs", IPv4Interface(f"{SITE_HOST}/24"), None, "rbr0"),
        ]
        for name, (public, _, private) in BRIDGES.items():
            spaces.append(Namespace(f"br{name}", n(f"br{name}"), "bridge", "vpc", forwarding=True))
            links += [
                Link(n(f"br{name}"), "wan0", n("hub"), f"p{name}", public, None, "inet0"),
                Link(n(f"br{name}"), "eth1", n("rtr"), f"r{name}", private, None, "rbr0"),
            ]
        return Layout(self.run, "failover-bed", tuple(spaces), tuple(links), (), (), None, None, n("hub"), n("hub"))

    def config(self, me: str) -> dict:
        peer = "b" if me == "a" else "a"
        return {
            "site": "Hybrid-VPC", "me": me, "peer": peer, "tap": TAP,
            "own_address": str(BRIDGES[me][1]), "peer_address": str(BRIDGES[peer][1].ip),
            "vip": str(VIP), "vip_mac": VIP_MAC, "probes": [str(PROBE)],
            "interval_s": self.interval_s, "fail_after": self.fail_after, "recover_after": self.recover_after,
            "preferred": self.preferred,
            "driver": {"kind": "lab", "netns": self.ns("rtr"), "prefixes": [str(HOME_LAN)], "via": str(BRIDGES[me][2].ip)},
            "state_file": str(self.directory / f"state-{me}.json"),
        }

    def _spawn(self, key: str, ns: str, *argv: str) -> None:
        log = (self.directory / f"{key}.log").open("ab")
        env = {**os.environ, MARK: str(self.directory), "PYTHONPATH": str(ROOT)}
        self.procs[key] = subprocess.Popen(in_ns(ns, sys.executable, *argv), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        log.close()

    def start_relay(self, me: str) -> None:
        os_side = [f"addr replace {BRIDGES[me][1]} dev {TAP}", f"route replace {HOME_LAN} via 192.168.10.1 dev {TAP}"]
        self._spawn(f"relay-{me}", self.ns(f"br{me}"), "-m", "lab.frame_relay", "bridge", str(HUB_PUBLIC.ip), str(CASCADE_PORT), TAP, *os_side)

    def start_controller(self, me: str) -> None:
        path = self.directory / f"failover-{me}.json"
        path.write_text(json.dumps(self.config(me), indent=1))
        self._spawn(f"controller-{me}", self.ns(f"br{me}"), "-m", "softether.failover", str(path))

    def relay_pids(self, me: str) -> list[int]:
        return [p for p in pids_in(self.ns(f"br{me}")) if "lab.frame_relay" in cmdline(p)]

    def side(self, me: str) -> Side:
        return Side(
            name=me, netns=self.ns(f"br{me}"), tap=TAP, own_address=BRIDGES[me][1],
            state_file=self.directory / f"state-{me}.json", server=(HUB_PUBLIC.ip, CASCADE_PORT),
            home=HOME_LAN, softether_pids=lambda: self.relay_pids(me), restart_softether=lambda: self.start_relay(me),
        )

    def sides(self) -> tuple[Side, Side]:
        return self.side("a"), self.side("b")

    def hub_port(self, mac: str) -> str | None:
        """The hub's port where `mac` was last seen (its forwarding database)."""
        for entry in json.loads(sh(*in_ns(self.ns("hub"), "bridge", "-j", "fdb", "show", "br", "br0"), check=False) or "[]"):
            if entry.get("mac", "").lower() == mac.lower() and "permanent" not in entry.get("state", ""):
                return entry.get("ifname")
        return None

    def tap_mac(self, me: str) -> str:
        return json.loads(sh("ip", "-n", self.ns(f"br{me}"), "-j", "link", "show", "dev", TAP))[0]["address"]

    def has_vip(self, me: str) -> bool:
        return bool(sh("ip", "-n", self.ns(f"br{me}"), "-o", "link", "show", "dev", "hcvip0", check=False).strip())

    def green(self) -> bool:
        """The site host and the home LAN host reach each other through the pair (one ping
        each way, 1 s)."""
        there = sh(*in_ns(self.ns("lan"), "ping", "-n", "-q", "-c1", "-W1", str(SITE_HOST)), check=False, timeout=5)
        back = sh(*in_ns(self.ns("s1"), "ping", "-n", "-q", "-c1", "-W1", str(PROBE)), check=False, timeout=5)
        return " 0% packet loss" in there and " 0% packet loss" in back

    def start(self) -> Bed:
        self.directory.mkdir(parents=True, exist_ok=True)
        netns.build(self.layout())
        # A VPC router sends no ICMP redirects. Linux does, on a router whose next hop is on
        # the subnet it came from, and the host then keeps the old bridge as its next hop
        # for the redirect's lifetime (300 s) after the route moved.
        run(in_ns(self.ns("rtr"), "sysctl", "-qw", *[f"net.ipv4.conf.{d}.send_redirects=0" for d in ("all", "default", "rbr0")]))
        self._spawn("hub", self.ns("hub"), "-m", "lab.frame_relay", "hub", str(HUB_PUBLIC.ip), str(CASCADE_PORT), "br0")
        for me in BRIDGES:
            self.start_relay(me)
        for me in BRIDGES:
            self.start_controller(me)
        return self

    def stop(self) -> None:
        """Stop every process (SIGCONT first: a frozen one cannot die of TERM), delete the
        namespaces. Idempotent; continues past failures."""
        names = [n.name for n in self.layout().namespaces]
        for ns in names:
            for pid in pids_in(ns):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGCONT)
            kill_all_in(ns)
        for p in self.procs.values():
            if alive(p.pid):
                stop(p.pid, 3)
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(3)
        with contextlib.suppress(LabError):
            netns.delete(names)

    def __enter__(self) -> Bed:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()
