"""The failover decision, round by round, with fake probes, a fake heartbeat link and a fake
clock: two controllers wired to each other, as on the transit segment."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest

from softether.failover.config import parse
from softether.failover.controller import ACTIVE, STANDBY, Controller, Decider, Heartbeat

from .helpers import sample


def hb(role: str, score: int = 1, term: int = 1, seq: int = 1, leaving: bool = False) -> Heartbeat:
    return Heartbeat("Hybrid-VPC", "b", role, score, term, seq, leaving)


def decider(**kw: Any) -> Decider:
    args: dict[str, Any] = {"me": "a", "peer": "b", "fail_after": 3, "recover_after": 10, "preferred": "a"}
    return Decider(**(args | kw))


def test_decider_standby_takes_over_after_fail_after_silent_rounds():
    d = decider(me="b", peer="a", preferred="a")
    for _ in range(5):
        assert d.step(1, Heartbeat("Hybrid-VPC", "a", ACTIVE, 1, 1, 1)).action is None
    actions = [d.step(1, None).action for _ in range(3)]
    assert actions == [None, None, "claim"]
    assert d.role == ACTIVE and d.term == 2  # above the term it last heard


def test_decider_standby_does_not_take_over_when_its_own_probes_are_red():
    d = decider(me="b", peer="a")
    assert [d.step(0, None).action for _ in range(20)] == [None] * 20
    assert d.role == STANDBY


def test_decider_standby_takes_over_from_a_red_active_but_not_from_a_flapping_one():
    d = decider(me="b", peer="a", preferred=None, green_streak=5)
    flap = [False, False, True] * 6  # the active red two rounds in three: never three in a row
    active = lambda g: Heartbeat("Hybrid-VPC", "a", ACTIVE, int(g), 1, 1)  # noqa: E731
    assert [d.step(1, active(g)).action for g in flap] == [None] * len(flap)
    assert [d.step(1, active(False)).action for _ in range(3)] == [None, None, "claim"]


def test_decider_active_gives_up_after_fail_after_red_rounds_unless_the_peer_is_red_too():
    d = decider(role=ACTIVE, term=1)
    assert [d.step(0, hb(STANDBY, score=1)).action for _ in range(3)] == [None, None, "release"]
    d = decider(role=ACTIVE, term=1)
    assert [d.step(0, hb(STANDBY, score=0)).action for _ in range(10)] == [None] * 10
    # One red round among green ones never moves anything.
    d = decider(role=ACTIVE, term=1)
    assert [d.step(int(g), hb(STANDBY)).action for g in [False, True, False, False, True] * 4] == [None] * 20


def test_decider_failback_to_the_preferred_after_recover_after_green_rounds():
    d = decider(recover_after=10)  # a, preferred, standby; b carries the site
    actions = [d.step(1, hb(ACTIVE, term=4)).action for _ in range(10)]
    assert actions == [None] * 9 + ["claim"]
    assert d.term == 5
    # A green round breaks the count when it is interrupted by a red one.
    d = decider(recover_after=10)
    seq = [True] * 9 + [False] + [True] * 9
    assert all(d.step(int(g), hb(ACTIVE)).action is None for g in seq)


def test_decider_no_failback_without_preference():
    d = decider(preferred=None)
    assert all(d.step(1, hb(ACTIVE)).action is None for _ in range(50))


def test_decider_two_actives_agree_who_stays():
    # The newer term stays; the older one releases, on each side the same answer.
    older, newer = decider(role=ACTIVE, term=1), decider(me="b", peer="a", role=ACTIVE, term=2)
    assert older.step(1, hb(ACTIVE, term=2)).action == "release"
    assert newer.step(1, Heartbeat("Hybrid-VPC", "a", ACTIVE, 1, 1, 1)).action is None
    # Green beats red before terms count.
    red = decider(role=ACTIVE, term=5)
    assert red.step(0, hb(ACTIVE, score=1, term=1)).action == "release"
    # Same term: the preferred bridge stays.
    a, b = decider(role=ACTIVE, term=3), decider(me="b", peer="a", role=ACTIVE, term=3)
    assert a.step(1, hb(ACTIVE, term=3)).action is None
    assert b.step(1, Heartbeat("Hybrid-VPC", "a", ACTIVE, 1, 3, 1)).action == "release"


def test_decider_two_green_standbys_only_the_tiebreak_winner_takes_over():
    a, b = decider(preferred="b"), decider(me="b", peer="a", preferred="b")
    a_actions = [a.step(1, hb(STANDBY)).action for _ in range(6)]
    b_actions = [b.step(1, Heartbeat("Hybrid-VPC", "a", STANDBY, 1, 0, 1)).action for _ in range(6)]
    assert a_actions == [None] * 6
    assert b_actions == [None, None, "claim", None, None, None]


def test_decider_takes_over_at_once_from_a_peer_that_leaves():
    d = decider(me="b", peer="a", green_streak=1)
    assert d.step(1, Heartbeat("Hybrid-VPC", "a", STANDBY, 1, 1, 1, leaving=True)).action == "claim"


def test_heartbeat_decode_takes_only_the_peer_of_this_site():
    beat = Heartbeat("Hybrid-VPC", "b", ACTIVE, 1, 3, 9)
    assert Heartbeat.decode(beat.encode(), "Hybrid-VPC", "b") == beat
    assert Heartbeat.decode(beat.encode(), "Hybrid-VNet", "b") is None
    assert Heartbeat.decode(beat.encode(), "Hybrid-VPC", "a") is None
    assert Heartbeat.decode(b"{not json", "Hybrid-VPC", "b") is None
    assert Heartbeat.decode(json.dumps({"site": "Hybrid-VPC", "name": "b", "role": "boss", "score": 1, "term": 1, "seq": 1}).encode(), "Hybrid-VPC", "b") is None


# --- two controllers wired together ----------------------------------------------------------


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeProber:
    green: bool = True

    def round(self, targets, timeout):
        return dict.fromkeys(targets, self.green)


@dataclass
class FakeLink:
    """Delivers to the other end's inbox unless `cut`."""

    inbox: list[bytes] = field(default_factory=list)
    other: FakeLink | None = None
    cut: bool = False

    def send(self, hb: Heartbeat) -> None:
        if not self.cut and self.other is not None and not self.other.cut:
            self.other.inbox.append(hb.encode())

    def receive(self) -> list[bytes]:
        out, self.inbox = self.inbox, []
        return out

    def close(self) -> None:
        pass


@dataclass
class FakeVip:
    on: bool = False
    announced: int = 0

    def held(self) -> bool:
        return self.on

    def hold(self) -> bool:
        was, self.on = self.on, True
        return not was

    def announce(self) -> None:
        self.announced += 1

    def release(self) -> None:
        self.on = False


@dataclass
class Routes:
    """One cloud route table that both drivers write."""

    holder: str | None = None


@dataclass
class FakeDriver:
    routes: Routes
    name: str
    fail: int = 0  # the next calls that fail

    def claim(self) -> None:
        if self.fail:
            self.fail -= 1
            raise RuntimeError("throttled")
        self.routes.holder = self.name

    def holder(self) -> str | None:
        return self.routes.holder


@dataclass
class Pair:
    a: Controller
    b: Controller
    clock: Clock
    routes: Routes

    def rounds(self, n: int) -> list[tuple[str | None, str | None]]:
        out = []
        for _ in range(n):
            self.clock.now += 1.0
            out.append((self.a.round().action, self.b.round().action))
        return out

    def roles(self) -> tuple[str, str]:
        return self.a.decider.role, self.b.decider.role


def pair(tmp_path: Path, **cfg: Any) -> Pair:
    clock, routes = Clock(), Routes()
    la, lb = FakeLink(), FakeLink()
    la.other, lb.other = lb, la
    ctl = {}
    for me, peer, own, other, link in (("a", "b", "192.168.10.12/24", "192.168.10.13", la), ("b", "a", "192.168.10.13/24", "192.168.10.12", lb)):
        c = parse(sample(me=me, peer=peer, own_address=own, peer_address=other, state_file=str(tmp_path / f"{me}.json"), **cfg))
        ctl[me] = Controller(c, FakeProber(), link, FakeVip(), FakeDriver(routes, me), clock=clock, background_claims=False)
    return Pair(ctl["a"], ctl["b"], clock, routes)


def state(ctl: Controller) -> dict[str, Any]:
    return json.loads(ctl.cfg.state_file.read_text())


def test_controller_pair_starts_with_the_preferred_active(tmp_path: Path):
    p = pair(tmp_path)
    p.rounds(3)
    assert p.roles() == (ACTIVE, STANDBY)
    assert p.routes.holder == "a" and p.a.vip.held() and not p.b.vip.held()
    assert state(p.a)["role"] == ACTIVE and state(p.a)["failovers"] == 0  # the first start is no failover
    p.rounds(100)
    assert p.roles() == (ACTIVE, STANDBY)


def test_controller_pair_fails_over_in_fail_after_rounds_and_fails_back(tmp_path: Path):
    p = pair(tmp_path, recover_after=5)
    p.rounds(5)
    assert isinstance(p.a.prober, FakeProber)
    p.a.prober.green = False  # a's path through the tunnel goes dark; heartbeats still pass
    got = p.rounds(3)
    assert got[-1] == ("release", "claim") and all(x == (None, None) for x in got[:-1])
    assert p.roles() == (STANDBY, ACTIVE) and p.routes.holder == "b"
    assert isinstance(p.b.vip, FakeVip) and p.b.vip.on and p.b.vip.announced >= 1
    assert not p.a.vip.held()
    assert state(p.b)["failovers"] == 1 and state(p.b)["last_failover_s"] == 2.0  # first red round to claim
    p.a.prober.green = True
    got = p.rounds(5)
    assert got[-1] == ("claim", "release") and p.roles() == (ACTIVE, STANDBY)
    assert p.routes.holder == "a"


def test_controller_pair_frozen_active_loses_when_it_wakes(tmp_path: Path):
    p = pair(tmp_path)
    p.rounds(5)
    p.a.link.cut = True  # type: ignore[attr-defined]  # frozen: nothing in or out
    for _ in range(3):
        p.clock.now += 1.0
        p.b.round()
    assert p.b.decider.role == ACTIVE and p.routes.holder == "b"
    p.a.link.cut = False  # type: ignore[attr-defined]
    p.rounds(2)  # a wakes up active, hears b active with the newer term, releases
    assert p.roles() == (STANDBY, ACTIVE) and not p.a.vip.held()


def test_controller_pair_split_brain_standby_red_never_takes_over(tmp_path: Path):
    p = pair(tmp_path)
    p.rounds(5)
    p.a.link.cut = True  # type: ignore[attr-defined]  # the heartbeat path is cut...
    assert isinstance(p.b.prober, FakeProber)
    p.b.prober.green = False  # ...and b cannot reach the far sites either: it must not claim
    p.rounds(20)
    assert p.roles() == (ACTIVE, STANDBY) and p.routes.holder == "a"


def test_controller_retries_a_failed_claim_each_round(tmp_path: Path):
    p = pair(tmp_path)
    assert isinstance(p.a.driver, FakeDriver)
    p.a.driver.fail = 2
    p.rounds(3)
    assert p.a.decider.role == ACTIVE and p.routes.holder is None
    p.rounds(2)
    assert p.routes.holder == "a"


def test_controller_leave_releases_only_what_it_holds(tmp_path: Path):
    p = pair(tmp_path)
    p.rounds(4)
    p.b.leave()  # the standby stops: holds nothing, releases nothing
    assert p.a.vip.held() and p.routes.holder == "a"
    p.a.leave()
    assert not p.a.vip.held() and p.routes.holder == "a"  # routes stay until b claims
    p.clock.now += 1
    assert p.b.round().action == "claim"


@pytest.mark.parametrize("held", [True, False])
def test_controller_resumes_active_when_it_finds_its_vip(tmp_path: Path, held: bool):
    c = parse(sample(state_file=str(tmp_path / "s.json")))
    ctl = Controller(c, FakeProber(), FakeLink(), FakeVip(on=held), FakeDriver(Routes(), "a"), background_claims=False)
    assert ctl.decider.role == (ACTIVE if held else STANDBY)


def test_controller_probes_every_address(tmp_path: Path):
    seen = []

    class Recording(FakeProber):
        def round(self, targets, timeout):
            seen.append(tuple(targets))
            return {t: t != IPv4Address("192.168.30.100") for t in targets}

    c = parse(sample(state_file=str(tmp_path / "s.json")))
    ctl = Controller(c, Recording(), FakeLink(), FakeVip(), FakeDriver(Routes(), "a"), background_claims=False)
    ctl.round()
    assert seen == [(IPv4Address("192.168.1.249"), IPv4Address("192.168.30.100"))]
    assert state(ctl)["green"] is False  # one probe unanswered: red


def test_decider_never_heard_peer_waits_twice_fail_after():
    d = decider(me="b", peer="a")
    assert [d.step(1, None).action for _ in range(6)] == [None] * 5 + ["claim"]


def test_decider_released_bridge_needs_recover_after_fresh_rounds_before_failback():
    d = decider(recover_after=10, role=ACTIVE, term=1, green_streak=100)
    assert d.step(1, hb(ACTIVE, term=2)).action == "release"  # it froze; b took over meanwhile
    actions = [d.step(1, hb(ACTIVE, term=2)).action for _ in range(10)]
    assert actions == [None] * 9 + ["claim"]


def test_decider_scores_one_far_site_down_for_both_moves_nothing():
    # Two probes; one far site is down, so each bridge reaches one of two.
    a, b = decider(probes=2, role=ACTIVE, term=1), decider(me="b", peer="a", probes=2, green_streak=0)
    for _ in range(20):
        assert a.step(1, hb(STANDBY, score=1)).action is None
        assert b.step(1, Heartbeat("Hybrid-VPC", "a", ACTIVE, 1, 1, 1)).action is None


def test_decider_scores_the_bridge_that_reaches_more_sites_takes_over():
    a, b = decider(probes=2, role=ACTIVE, term=1), decider(me="b", peer="a", probes=2, up_streak=5)
    got = [(a.step(1, hb(STANDBY, score=2)).action, b.step(2, Heartbeat("Hybrid-VPC", "a", ACTIVE, 1, 1, 1)).action) for _ in range(3)]
    assert got == [(None, None), (None, None), ("release", "claim")]
    # With the other far site down for both, the one whose tunnel still carries wins too.
    b2 = decider(me="b", peer="a", probes=2, up_streak=5)
    assert [b2.step(1, Heartbeat("Hybrid-VPC", "a", ACTIVE, 0, 1, 1)).action for _ in range(3)] == [None, None, "claim"]


def test_decider_two_standbys_the_better_one_goes_first():
    a = decider(probes=2, up_streak=5)  # a is preferred but reaches fewer sites
    assert all(a.step(1, hb(STANDBY, score=2)).action is None for _ in range(10))


def test_controller_a_hanging_cloud_api_does_not_stop_the_heartbeat(tmp_path: Path):
    """The claim runs beside the rounds: while the API hangs, every round still sends its
    heartbeat (the peer must not take a healthy bridge's site); the claim counts once done."""
    release = threading.Event()

    class Hanging(FakeDriver):
        def claim(self) -> None:
            release.wait(10)
            super().claim()

    routes, inbox = Routes(), FakeLink()
    link = FakeLink(other=inbox)
    c = parse(sample(state_file=str(tmp_path / "s.json")))
    ctl = Controller(c, FakeProber(), link, FakeVip(), Hanging(routes, "a"))
    for _ in range(10):
        ctl.round()
    assert ctl.decider.role == ACTIVE and routes.holder is None and not ctl.claimed
    assert len(inbox.inbox) == 10  # one heartbeat a round, claim pending or not
    release.set()
    assert ctl.claimer.thread is not None
    ctl.claimer.thread.join(5)
    ctl.round()
    assert ctl.claimed and routes.holder == "a"
