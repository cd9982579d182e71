"""The failover controller: which bridge of the pair carries the site, decided from probes
that cross the tunnel, and the takeover that moves both ends of the path together.

Each round (every `interval_s`):
1. **probe**: one ICMP echo to every address in `probes`, sent from a raw socket bound to
   `own_address` and to the tap (SO_BINDTODEVICE), so a probe can only leave through the
   tunnel; the round's score is how many answered within the round (green: all of them);
2. **heartbeat**: the newest datagram from the peer since the last round (UDP
   `heartbeat_port`, between the own transit addresses, so it crosses the tunnels and hub
   HYBRID too) says its role, its score and its term; none is "missing";
3. **decide** (`Decider.step`, pure);
4. **act**: a takeover puts the vip on this bridge (a macvlan `hcvip0` on the tap with
   `vip_mac`, the vip as a /32 so the transit network keeps one connected route, ARP answered
   only by the device that holds the address), announces it by gratuitous ARP, then
   `driver.claim()` points the cloud routes here; a demotion removes the macvlan. It never
   sets a hub offline (SoftEther's L3 switch stops for every site when one hub is offline);
5. **heartbeat out** and the state file.

Split brain: a standby takes over only when its own probes answered for `fail_after` rounds
and the active was missing, behind it (fewer far sites answered), or absent (both standby)
for `fail_after` rounds; when both say active, both apply the same rule (`wins`) and the
loser releases. Failback: the `preferred` bridge, standby, takes the site back once green
for `recover_after` rounds.

Standard library only (the bridge VM has no pip).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from ipaddress import IPv4Address
from pathlib import Path
from typing import Protocol

from .config import Config

VIP_DEVICE = "hcvip0"
RECHECK_ROUNDS = 30  # an active bridge re-claims (idempotent: reads first) this often
ACTIVE, STANDBY = "active", "standby"


@dataclass(frozen=True)
class Heartbeat:
    """What one bridge tells the other every round."""

    site: str
    name: str  # "a" | "b"
    role: str  # ACTIVE | STANDBY
    score: int  # how many of its probes answered this round
    term: int  # raised by every takeover: the newer claim wins a tie of two actives
    seq: int
    leaving: bool = False  # its controller stops and has released the vip: take over now

    def encode(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def decode(cls, data: bytes, site: str, sender: str) -> Heartbeat | None:
        """The heartbeat in `data` if it is `sender`'s of `site`; None for anything else."""
        try:
            raw = json.loads(data)
            hb = cls(
                site=str(raw["site"]),
                name=str(raw["name"]),
                role=str(raw["role"]),
                score=int(raw["score"]),
                term=int(raw["term"]),
                seq=int(raw["seq"]),
                leaving=raw.get("leaving") is True,
            )
        except (ValueError, KeyError, TypeError):
            return None
        ok = hb.site == site and hb.name == sender and hb.role in (ACTIVE, STANDBY) and hb.score >= 0
        return hb if ok else None


@dataclass(frozen=True)
class Decision:
    """What a round decided: `claim` (take the vip and the routes), `release`, or None; why."""

    action: str | None
    reason: str = ""


@dataclass
class Decider:
    """The pure decision of one bridge, one call per round, from its score (how many of the
    `probes` far addresses answered) and the peer's heartbeat. Scores, not only green/red:
    with one far site down, both bridges miss that probe, and the one that still reaches
    the others is the better one."""

    me: str
    peer: str
    fail_after: int
    recover_after: int
    preferred: str | None
    probes: int = 1
    role: str = STANDBY
    term: int = 0
    green_streak: int = 0  # rounds with every probe answered
    up_streak: int = 0  # rounds with at least one probe answered
    behind: int = 0  # as active: rounds the peer did better (or, with no peer, nothing answered)
    peer_bad: int = 0  # consecutive rounds the peer was not an active doing at least as well
    peer_term: int = 0
    heard_once: bool = False  # the peer spoke since this controller started

    def tiebreak_winner(self) -> str:
        """Who goes first when nothing else decides: the preferred bridge, else "a"."""
        return self.preferred or "a"

    def wins(self, score: int, peer: Heartbeat) -> bool:
        """Of two actives, whether this one stays: the higher score, then the newer term (the
        later, deliberate takeover), then the tiebreak. Both sides compute the same answer."""
        if score != peer.score:
            return score > peer.score
        if self.term != peer.term:
            return self.term > peer.term
        return self.tiebreak_winner() == self.me

    def step(self, score: int, peer: Heartbeat | None) -> Decision:
        self.green_streak = self.green_streak + 1 if score >= self.probes else 0
        self.up_streak = self.up_streak + 1 if score > 0 else 0
        if peer is not None:
            self.peer_term, self.heard_once = max(self.peer_term, peer.term), True
        serving = peer is not None and peer.role == ACTIVE and peer.score >= score
        self.peer_bad = 0 if serving else self.peer_bad + 1
        if self.role == ACTIVE:
            return self._as_active(score, peer)
        return self._as_standby(score, peer)

    def _as_active(self, score: int, peer: Heartbeat | None) -> Decision:
        if peer is not None and peer.role == ACTIVE and not self.wins(score, peer):
            return self._demote("the peer is active and wins")
        # Behind for fail_after rounds: the peer reaches more far sites, or nothing answers
        # and the peer is silent (it may have taken over: a bridge cut off from the far
        # sites must not keep answering for the vip beside it). Equal: keep the site.
        worse = peer.score > score if peer is not None else score == 0
        self.behind = self.behind + 1 if worse else 0
        if self.behind >= self.fail_after:
            return self._demote(f"own probes {score}/{self.probes}, behind for {self.behind} rounds")
        return Decision(None)

    def _as_standby(self, score: int, peer: Heartbeat | None) -> Decision:
        if self.up_streak == 0:
            return Decision(None)
        if peer is not None and peer.leaving:
            return self._promote("the peer left")
        if self.up_streak < self.fail_after:
            return Decision(None)
        if peer is not None and peer.role == ACTIVE and peer.score >= score:
            if self.preferred == self.me and self.green_streak >= self.recover_after:
                return self._promote("failback to the preferred bridge")
            return Decision(None)
        # Never heard since the start: the pair may be starting together (its heartbeat
        # socket waits for the tap's address), so silence counts double before a claim.
        if self.peer_bad < self.fail_after * (1 if self.heard_once else 2):
            return Decision(None)
        if peer is None:
            return self._promote(f"the peer is silent for {self.peer_bad} rounds")
        if peer.role == ACTIVE:
            return self._promote(f"the peer's probes are behind ({peer.score} < {score}/{self.probes}) for {self.peer_bad} rounds")
        # Both standby: the better one goes first, on a tie the tiebreak winner, so that two
        # bridges do not both take over.
        if peer.score > score or (peer.score == score and self.tiebreak_winner() != self.me):
            return Decision(None)
        return self._promote("no bridge carries the site")

    def _promote(self, reason: str) -> Decision:
        self.role, self.term, self.behind = ACTIVE, max(self.term, self.peer_term) + 1, 0
        return Decision("claim", reason)

    def _demote(self, reason: str) -> Decision:
        # A failback needs recover_after green rounds from here: the rounds before the
        # fault (or before it froze) prove nothing about the bridge that comes back.
        self.role, self.green_streak = STANDBY, 0
        return Decision("release", reason)


# --- the round's I/O -------------------------------------------------------------------------


class Prober(Protocol):
    def round(self, targets: Sequence[IPv4Address], timeout: float) -> dict[IPv4Address, bool]: ...


class Link(Protocol):
    def send(self, hb: Heartbeat) -> None: ...
    def receive(self) -> list[bytes]: ...
    def close(self) -> None: ...


class Vip(Protocol):
    def held(self) -> bool: ...
    def hold(self) -> bool: ...  # True when it had to (re)create it
    def announce(self) -> None: ...
    def release(self) -> None: ...


class Driver(Protocol):
    def claim(self) -> None: ...
    def holder(self) -> str | None: ...


ICMP_ECHO, ICMP_REPLY = 8, 0
SO_BINDTODEVICE = getattr(socket, "SO_BINDTODEVICE", 25)


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def echo_request(ident: int, seq: int, payload: bytes = b"hybrid-failover") -> bytes:
    head = struct.pack("!BBHHH", ICMP_ECHO, 0, 0, ident, seq)
    return struct.pack("!BBHHH", ICMP_ECHO, 0, _checksum(head + payload), ident, seq) + payload


def parse_echo_reply(packet: bytes) -> tuple[IPv4Address, int, int] | None:
    """(source, identifier, sequence) of an IPv4 packet carrying an ICMP echo reply."""
    if len(packet) < 20:
        return None
    ihl = (packet[0] & 0x0F) * 4
    if len(packet) < ihl + 8 or packet[9] != socket.IPPROTO_ICMP:
        return None
    kind, _, _, ident, seq = struct.unpack("!BBHHH", packet[ihl : ihl + 8])
    if kind != ICMP_REPLY:
        return None
    return IPv4Address(packet[12:16]), ident, seq


@dataclass
class IcmpProber:
    """ICMP echo from a raw socket bound to the own transit address and the tap: a probe can
    leave only through the tunnel. A fresh socket per round (the tap is re-created whenever
    vpnbridge restarts; its address can vanish): any socket error is a red round."""

    source: IPv4Address
    device: str
    seq: int = 0
    ident: int = field(default_factory=lambda: os.getpid() & 0xFFFF)

    def round(self, targets: Sequence[IPv4Address], timeout: float) -> dict[IPv4Address, bool]:
        answered = dict.fromkeys(targets, False)
        self.seq = (self.seq + 1) & 0xFFFF
        deadline = time.monotonic() + timeout
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as s:
                s.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, self.device.encode())
                s.bind((str(self.source), 0))
                for t in targets:
                    s.sendto(echo_request(self.ident, self.seq), (str(t), 0))
                while not all(answered.values()):
                    left = deadline - time.monotonic()
                    if left <= 0 or not select.select([s], [], [], left)[0]:
                        break
                    got = parse_echo_reply(s.recv(2048))
                    if got and got[1:] == (self.ident, self.seq) and got[0] in answered:
                        answered[got[0]] = True
        except OSError:
            pass
        return answered


@dataclass
class UdpLink:
    """The heartbeat socket, bound to the own transit address. Re-made after any error (the
    address comes back after the tap is re-created); a send that fails is a heartbeat lost."""

    own: IPv4Address
    peer: IPv4Address
    port: int
    sock: socket.socket | None = None

    def _socket(self) -> socket.socket | None:
        if self.sock is None:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((str(self.own), self.port))
                s.setblocking(False)
            except OSError:
                s.close()
                return None
            self.sock = s
        return self.sock

    def send(self, hb: Heartbeat) -> None:
        s = self._socket()
        try:
            if s is not None:
                s.sendto(hb.encode(), (str(self.peer), self.port))
        except OSError:
            self.close()

    def receive(self) -> list[bytes]:
        s, out = self._socket(), []
        while s is not None and len(out) < 64:
            try:
                data, (addr, _) = s.recvfrom(2048)
            except BlockingIOError:
                break
            except OSError:
                self.close()
                break
            if addr == str(self.peer):
                out.append(data)
        return out

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def run_cmd(argv: Sequence[str], timeout: float = 5.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)


def gratuitous_arp(ip: IPv4Address, mac: str) -> bytes:
    """An Ethernet broadcast ARP request announcing `ip` at `mac` (sender = target = ip)."""
    hw = bytes.fromhex(mac.replace(":", ""))
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + hw + ip.packed + b"\0" * 6 + ip.packed
    return b"\xff" * 6 + hw + struct.pack("!H", 0x0806) + arp


@dataclass
class MacvlanVip:
    """The vip as a macvlan `hcvip0` on the tap with the vip's MAC. Only a device that is
    this controller's (a macvlan of this tap with `mac`) is ever removed."""

    tap: str
    ip: IPv4Address
    mac: str
    device: str = VIP_DEVICE
    run: Callable[[Sequence[str]], subprocess.CompletedProcess[str]] = run_cmd

    def _link(self) -> dict | None:
        res = self.run(["ip", "-j", "-d", "link", "show", "dev", self.device])
        if res.returncode != 0:
            return None
        with contextlib.suppress(ValueError, IndexError):
            return json.loads(res.stdout)[0]
        return None

    def _ours(self, link: dict | None) -> bool:
        return (
            link is not None
            and link.get("address", "").lower() == self.mac
            and link.get("link") == self.tap
            and link.get("linkinfo", {}).get("info_kind") == "macvlan"
        )

    def _has_address(self) -> bool:
        res = self.run(["ip", "-j", "addr", "show", "dev", self.device])
        with contextlib.suppress(ValueError):
            for link in json.loads(res.stdout or "[]"):
                if any(a.get("local") == str(self.ip) for a in link.get("addr_info", [])):
                    return "UP" in link.get("flags", [])
        return False

    def held(self) -> bool:
        return self._ours(self._link()) and self._has_address()

    def hold(self) -> bool:
        if self.held():
            return False
        link = self._link()
        if link is not None and not self._ours(link):
            # Someone else's device of this name (or the tap was re-created under it).
            self.run(["ip", "link", "del", "dev", self.device])
        if not self._ours(self._link()):
            self.run(["ip", "link", "add", self.device, "link", self.tap, "address", self.mac, "type", "macvlan", "mode", "bridge"])
        # ARP for an address only from the device that holds it: the tap must not answer
        # for the vip with its own MAC, nor the macvlan for the own address with the vip's.
        for dev in (self.tap, self.device):
            with contextlib.suppress(OSError):
                Path(f"/proc/sys/net/ipv4/conf/{dev}/arp_ignore").write_text("1\n")
        self.run(["ip", "addr", "replace", f"{self.ip}/32", "dev", self.device])
        self.run(["ip", "link", "set", self.device, "up"])
        return True

    def announce(self) -> None:
        frame = gratuitous_arp(self.ip, self.mac)
        with contextlib.suppress(OSError), socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as s:
            s.bind((self.device, 0))
            s.send(frame)

    def release(self) -> None:
        if self._ours(self._link()):
            self.run(["ip", "link", "del", "dev", self.device])


# --- the controller ---------------------------------------------------------------------------


@dataclass
class State:
    """The state file's content (`/run/hybrid-failover/state.json`)."""

    site: str
    me: str
    role: str
    since: float
    failovers: int = 0
    last_failover_s: float | None = None
    term: int = 0
    green: bool = False  # every probe answered in the last round
    score: int = 0  # how many answered
    reason: str = ""


def read_state(path: Path) -> dict:
    with contextlib.suppress(OSError, ValueError):
        data = json.loads(path.read_text())
        if isinstance(data, dict):
            return data
    return {}


def write_state(path: Path, state: State) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(asdict(state), sort_keys=True) + "\n")
    os.replace(tmp, path)


@dataclass
class Claimer:
    """The driver's claim off the round's thread: a cloud API that hangs (each call waits up
    to 5 s) must not stop the heartbeat, or the peer would take the site from a healthy
    bridge. A result belongs to the takeover (term) that started it; a stale one is dropped.
    `background=False` runs it in the caller's thread (tests with a fake clock)."""

    driver: Driver
    clock: Callable[[], float]
    background: bool = True
    thread: threading.Thread | None = None
    result: tuple[int, float, str | None] | None = None  # (term, finished at, error)

    def busy(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def start(self, term: int, wait_s: float) -> None:
        """Start this term's claim and wait up to `wait_s` for it (a quick API is done
        within the round that started it)."""
        if self.busy():
            return
        self.result = None
        if self.background:
            self.thread = threading.Thread(target=self._run, args=(term,), daemon=True)
            self.thread.start()
            self.thread.join(wait_s)
        else:
            self._run(term)

    def _run(self, term: int) -> None:
        try:
            self.driver.claim()
            error = None
        except Exception as exc:  # any driver failure: reported, retried by the next round
            error = str(exc) or type(exc).__name__
        self.result = (term, self.clock(), error)

    def take(self, term: int) -> tuple[float, str | None] | None:
        """(finished at, error) of this term's claim once it is done; None meanwhile."""
        got, self.result = self.result, None
        if got is None or self.busy() or got[0] != term:
            return None
        return got[1], got[2]


@dataclass
class Controller:
    cfg: Config
    prober: Prober
    link: Link
    vip: Vip
    driver: Driver
    clock: Callable[[], float] = time.time
    log: Callable[[str], None] = lambda line: None
    decider: Decider = field(init=False)
    state: State = field(init=False)
    seq: int = 0
    claimed: bool = True  # the driver's claim is done (or nothing to claim)
    announce_rounds: int = 0
    fault_started: float | None = None  # the first round of the fault being failed over
    peer_seen_active: bool = False
    peer_missing: bool = True
    counts: bool = False  # the takeover in progress is a failover (not the first start, not a failback)
    background_claims: bool = True
    claimer: Claimer = field(init=False)
    verify_at: int = -1  # the round that re-checks the routes after a claim (a late claim of the peer's)

    def __post_init__(self) -> None:
        c = self.cfg
        self.claimer = Claimer(self.driver, self.clock, self.background_claims)
        self.decider = Decider(c.me, c.peer, c.fail_after, c.recover_after, c.preferred, len(c.probes))
        old = read_state(c.state_file)
        now = self.clock()
        self.state = State(
            c.site, c.me, STANDBY, now,
            failovers=int(old.get("failovers", 0)),
            last_failover_s=old.get("last_failover_s"),
            term=int(old.get("term", 0)),
        )
        self.decider.term = self.state.term
        # A vip left by a controller that crashed while active: carry on as active (a stop
        # by SIGTERM releases it), so that a restart does not move the site.
        if self.vip.held():
            self.decider.role = self.state.role = ACTIVE
            self.state.reason = "resumed holding the vip"
            self.claimed = False

    def heard(self) -> Heartbeat | None:
        """The peer's newest heartbeat since the last round; None: it is missing. Both sides
        send once a round, so a silent peer shows at once; the jitter of the two schedules
        can make one round miss one (the next has two), which `fail_after` absorbs."""
        newest = None
        for data in self.link.receive():
            hb = Heartbeat.decode(data, self.cfg.site, self.cfg.peer)
            if hb is not None and (newest is None or hb.seq > newest.seq or hb.term > newest.term):
                newest = hb
        return newest

    def round(self) -> Decision:
        c = self.cfg
        started = self.clock()
        verdicts = self.prober.round(c.probes, timeout=min(0.8 * c.interval_s, 2.0))
        score = sum(verdicts.values())
        green = score == len(c.probes)
        peer = self.heard()
        if (peer is None) != self.peer_missing:
            self.peer_missing = peer is None
            self.log(f"peer heartbeat {'missing' if peer is None else 'back'} (round {self.seq + 1})")
        if peer is not None and peer.role == ACTIVE:
            self.peer_seen_active = True
        was_bad = self.decider.peer_bad
        decision = self.decider.step(score, peer)
        if self.decider.peer_bad == 1 and was_bad == 0:
            self.fault_started = started
        elif self.decider.peer_bad == 0:
            self.fault_started = None
        if decision.action == "claim":
            self._claim(decision)
        elif decision.action == "release":
            self.vip.release()
            self._role(STANDBY, decision.reason)
        if self.decider.role == ACTIVE:
            conflict = peer is not None and peer.role == ACTIVE
            if conflict or self.seq % RECHECK_ROUNDS == 0 or self.seq == self.verify_at:
                # Both were active (the loser may have moved the routes and announced the vip
                # last), or a periodic check: the routes drifted back by hand or by an apply.
                self.claimed = False
                self.announce_rounds = max(self.announce_rounds, 3 if conflict else 1)
            self._keep()
        self.state.green, self.state.score, self.state.term = green, score, self.decider.term
        self.seq += 1
        self.link.send(Heartbeat(c.site, c.me, self.decider.role, score, self.decider.term, self.seq))
        with contextlib.suppress(OSError):
            write_state(c.state_file, self.state)
        if decision.action:
            down = [str(a) for a, ok in verdicts.items() if not ok]
            self.log(f"{decision.action}: {decision.reason} (own probes {'green' if green else 'red: ' + ' '.join(down)})")
        return decision

    def _claim(self, decision: Decision) -> None:
        self._role(ACTIVE, decision.reason)
        self.claimed = False
        self.counts = self.peer_seen_active and not decision.reason.startswith("failback")

    def _keep(self) -> None:
        """While active: the vip in place (re-made if the tap was re-created), announced on
        the rounds after a (re)take, the routes claimed until the driver succeeded once."""
        if self.vip.hold():
            self.announce_rounds = 3
        if self.announce_rounds:
            self.vip.announce()
            self.announce_rounds -= 1
        if self.claimed:
            return
        term = self.decider.term
        got = self.claimer.take(term)
        if got is None:
            self.claimer.start(term, 0.3 * self.cfg.interval_s)
            got = self.claimer.take(term)
        if got is None:
            return
        done_at, error = got
        if error is not None:
            self.log(f"claim failed, retrying next round: {error}")
            return
        self.claimed, self.verify_at = True, self.seq + 3
        if self.counts and self.fault_started is not None:
            self.state.last_failover_s = round(done_at - self.fault_started, 3)
            self.state.failovers += 1
            self.log(f"routes claimed: failover {self.state.failovers} took {self.state.last_failover_s} s")
        self.counts, self.fault_started = False, None

    def _role(self, role: str, reason: str) -> None:
        self.state.role, self.state.since, self.state.reason = role, self.clock(), reason

    def leave(self) -> None:
        """SIGTERM: give up the vip if this bridge holds it and tell the peer to take over
        now; nothing else (the routes stay until the peer claims them)."""
        if self.decider.role == ACTIVE:
            self.vip.release()
            self._role(STANDBY, "controller stopped")
            self.decider.role = STANDBY
        c = self.cfg
        self.seq += 1
        self.link.send(Heartbeat(c.site, c.me, STANDBY, self.state.score, self.decider.term, self.seq, leaving=True))
        with contextlib.suppress(OSError):
            write_state(c.state_file, self.state)
        self.link.close()


def run_forever(ctl: Controller, stop: threading.Event, rounds: Iterable[int] | None = None) -> None:
    """Rounds every `interval_s` until `stop` (bounded sleeps: a stop is seen within a round)."""
    interval = ctl.cfg.interval_s
    for _ in rounds if rounds is not None else iter(int, 1):
        if stop.is_set():
            break
        t0 = time.monotonic()
        ctl.round()
        stop.wait(max(0.0, min(interval, t0 + interval - time.monotonic())))
    ctl.leave()
