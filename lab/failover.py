"""The five faults of a bridge pair and the measurement of a failover (issue 22), over a
`Side` handle: the failover test bed (lab/failover_bed.py) and a lab with bridge pairs both
describe each bridge with one and call the same functions.

Each fault puts itself in and returns its undo. `measure` times a fault from its injection
to the first moment the caller's `green()` (the connectivity check: the bed's pings, a lab's
`lab.status.matrix`) passes with the other bridge active (traffic on the standby).

The firewall rules of the faults live in the bridge's own network namespace (a table of
their own, deleted by the undo); nothing here touches the root namespace.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

from softether.failover import status

from .proc import in_ns, kill, pids_in, run, send

NFT_TABLE = "hybrid_fault"
Undo = Callable[[], None]


@dataclass(frozen=True)
class Side:
    """One bridge of a pair, as the faults see it."""

    name: str  # "a" | "b"
    netns: str
    tap: str
    own_address: IPv4Interface  # on the tap
    state_file: Path  # the controller's state file, as this host reads it
    server: tuple[IPv4Address, int]  # the cascade's far end (the home VPN server's address, port)
    home: IPv4Network  # the home LAN the probes reach
    softether_pids: Callable[[], list[int]]  # its vpnbridge processes
    restart_softether: Callable[[], None]  # what the unit's Restart= does after a kill

    def role(self) -> str | None:
        try:
            return status.read(self.state_file.read_text()).get("role")
        except OSError:
            return None


def _nft(side: Side, rules: list[str]) -> Undo:
    script = "\n".join([f"table inet {NFT_TABLE} {{", *rules, "}"]) + "\n"
    run(in_ns(side.netns, "nft", "-f", "-"), stdin=script)

    def undo() -> None:
        run(in_ns(side.netns, "nft", "delete", "table", "inet", NFT_TABLE))

    return undo


def stop(side: Side) -> Undo:
    """The bridge stopped: every process in its namespace frozen (SIGSTOP), SoftEther and the
    controller alike, as a hung VM."""
    pids = pids_in(side.netns)
    for pid in pids:
        send(pid, signal.SIGSTOP)

    def undo() -> None:
        for pid in pids:
            send(pid, signal.SIGCONT)

    return undo


def kill_softether(side: Side) -> Undo:
    """vpnbridge killed (its tap goes with it); the undo starts it again."""
    kill(side.softether_pids(), signal.SIGKILL)
    return side.restart_softether


def blackhole_cascade(side: Side) -> Undo:
    """The cascade's TCP dropped both ways: SoftEther still says Established, nothing passes."""
    ip, port = side.server
    return _nft(side, [
        "  chain hf_out { type filter hook output priority -10; policy accept;",
        f"    ip daddr {ip} tcp dport {port} drop; }}",
        "  chain hf_in { type filter hook input priority -10; policy accept;",
        f"    ip saddr {ip} tcp sport {port} drop; }}",
    ])


def remove_tap_address(side: Side) -> Undo:
    """The tap's own address removed (the cascade stays up; the bridge can no longer speak on
    the transit network). The kernel drops the routes through the tap with it; the undo puts
    the address and those routes back (what the bridge's OS settings unit re-applies)."""
    routes = [r for r in json.loads(run(["ip", "-n", side.netns, "-j", "route", "show", "dev", side.tap]) or "[]") if r.get("gateway")]
    run(["ip", "-n", side.netns, "addr", "del", str(side.own_address), "dev", side.tap])

    def undo() -> None:
        run(["ip", "-n", side.netns, "addr", "replace", str(side.own_address), "dev", side.tap])
        for r in routes:
            run(["ip", "-n", side.netns, "route", "replace", r["dst"], "via", r["gateway"], "dev", side.tap])

    return undo


def cut_home_path(side: Side) -> Undo:
    """The bridge's path to the home LAN cut (tunnel, heartbeat and the other sites fine)."""
    net = side.home
    return _nft(side, [
        f"  chain hf_out {{ type filter hook output priority -10; policy accept; ip daddr {net} drop; }}",
        f"  chain hf_in {{ type filter hook input priority -10; policy accept; ip saddr {net} drop; }}",
        f"  chain hf_fwd {{ type filter hook forward priority -10; policy accept; ip daddr {net} drop; ip saddr {net} drop; }}",
    ])


FAULTS: dict[str, Callable[[Side], Undo]] = {
    "stopped": stop,
    "vpnbridge killed": kill_softether,
    "cascade blackholed": blackhole_cascade,
    "tap address removed": remove_tap_address,
    "home path cut": cut_home_path,
}


def roles(sides: tuple[Side, Side]) -> tuple[Side, Side] | None:
    """(active, standby) from one read of each state file; None unless exactly that."""
    a, b = sides
    got = (a.role(), b.role())
    if got == ("active", "standby"):
        return a, b
    if got == ("standby", "active"):
        return b, a
    return None


def wait(condition: Callable[[], bool], seconds: float, step: float = 0.1) -> float | None:
    """Seconds until `condition()` held (None: not within `seconds`)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 <= seconds:
        if condition():
            return time.monotonic() - t0
        time.sleep(step)
    return None


def measure(fault: Callable[[Side], Undo], active: Side, standby: Side, green: Callable[[], bool], wait_s: float) -> tuple[float | None, Undo]:
    """Inject `fault` into `active`; seconds until `green()` with `standby` active (None: not
    within `wait_s`), and the fault's undo (the caller recovers when it wants)."""
    undo = fault(active)
    took = wait(lambda: standby.role() == "active" and green(), wait_s)
    return took, undo


def recover(
    fault: Callable[[Side], Undo], active: Side, standby: Side, green: Callable[[], bool], wait_s: float
) -> tuple[float | None, str, Undo]:
    """Inject `fault` into `active`; seconds until `green()` again, carried by either bridge:
    `standby` active, or the check seen red and green again with `active` still active (a
    booted bridge repairs some faults in place: systemd's Restart=, the tap watcher). Also
    the name of the bridge that carries the site then, and the fault's undo."""
    undo = fault(active)
    seen_red = False

    def back() -> bool:
        nonlocal seen_red
        ok = green()
        seen_red = seen_red or not ok
        return ok and (standby.role() == "active" or seen_red)

    took = wait(back, wait_s)
    return took, standby.name if standby.role() == "active" else active.name, undo


def steady(sides: tuple[Side, Side], green: Callable[[], bool]) -> tuple[Side, Side] | None:
    """(active, standby) when one bridge is active, the other standby, and the check green."""
    pair = roles(sides)
    return pair if pair is not None and green() else None


def settle(sides: tuple[Side, Side], green: Callable[[], bool], seconds: float, active: str | None = None) -> tuple[Side, Side] | None:
    """(active, standby) once the pair is steady, with `active` the active one if given
    (None: not within `seconds`)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        pair = steady(sides, green)
        if pair is not None and active in (None, pair[0].name):
            return pair
        time.sleep(0.1)
    return None


def run_faults(
    sides: tuple[Side, Side],
    green: Callable[[], bool],
    wait_s: float,
    say: Callable[[str], None] = lambda _: None,
    faults: dict[str, Callable[[Side], Undo]] = FAULTS,
    preferred: str | None = None,
) -> Iterator[tuple[str, float | None, str]]:
    """Each fault once, into whichever bridge is active then: (fault, seconds from the fault
    to green again (`recover`; None: not within `wait_s`), the bridge carrying the site then),
    as each is measured.
    Between faults the fault is undone and the pair left to settle, back on the `preferred`
    bridge if there is one (its failback waits `recover_after` green rounds): `say` reports
    how long that took."""
    for name, fault in faults.items():
        pair = settle(sides, green, wait_s)
        if pair is None:
            raise RuntimeError(f"{name}: the pair is not steady within {wait_s:.0f} s (roles {[s.role() for s in sides]})")
        took, carrier, undo = recover(fault, *pair, green, wait_s)
        undo()
        yield name, took, carrier
        t0 = time.monotonic()
        after = settle(sides, green, wait_s + 60, preferred)
        settled = f"{time.monotonic() - t0:.1f} s" if after else "never"
        say(f"{name}: undone; steady again after {settled} with {after[0].name if after else '?'} active")
