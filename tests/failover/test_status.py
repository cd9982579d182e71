"""The state file as `hybrid status` reads it: the text report, JSON and Prometheus lines."""

from __future__ import annotations

import json
import re

from cli.status import prometheus, to_json
from softether.errors import TransportError
from softether.failover.status import SiteFailovers, by_site, read
from softether.health import NodeReport, Report, _failover_state, text_lines
from softether.transport import RunResult

A = {"site": "Hybrid-VPC", "me": "a", "role": "standby", "since": 100.0, "failovers": 1, "last_failover_s": 2.5, "term": 3}
B = {"site": "Hybrid-VPC", "me": "b", "role": "active", "since": 200.0, "failovers": 2, "last_failover_s": 3.25, "term": 4}


def test_status_read_takes_a_state_and_refuses_anything_else():
    assert read(json.dumps(B)) == B
    assert read("") == {} and read("{") == {} and read("[]") == {}
    assert read(json.dumps(B | {"role": "leader"})) == {}
    assert read(json.dumps(B | {"failovers": -1})) == {}
    assert read(json.dumps(B | {"last_failover_s": "3"})) == {}
    assert read(json.dumps(B | {"last_failover_s": None}))["last_failover_s"] is None


def test_status_by_site_sums_the_pair_and_takes_the_newest_duration():
    other = {"site": "Hybrid-VNet", "role": "active", "since": 50.0, "failovers": 0, "last_failover_s": None}
    assert by_site([A, B, {}, other]) == {
        "Hybrid-VNet": SiteFailovers(0, None),
        "Hybrid-VPC": SiteFailovers(3, 3.25),
    }


def _bridge(me: str, state: dict) -> NodeReport:
    return NodeReport(f"Hybrid-VPC-{me}", "bridge", "198.51.100.11", reachable=True, version="5.02 build 5188", failover=state)


def test_status_report_shows_roles_and_the_last_failover():
    report = Report("ha", [_bridge("a", A), _bridge("b", B), NodeReport("home", "server", "h", reachable=True)])
    lines = text_lines(report)
    assert any(re.fullmatch(r"  failover: active for \S+, 2 failover\(s\), last took 3\.2 s", ln) for ln in lines), lines
    assert any(ln.startswith("  failover: standby for ") for ln in lines)
    assert sum("failover:" in ln for ln in lines) == 2  # the server has none
    assert to_json(report)["nodes"]["Hybrid-VPC-b"]["failover"]["role"] == "active"
    assert to_json(report)["nodes"]["home"]["failover"] is None
    text = prometheus(report)
    assert "# TYPE hybrid_failover counter" in text
    assert 'hybrid_failover_total{stack="ha",site="Hybrid-VPC"} 3' in text.splitlines()
    assert 'hybrid_failover_last_seconds{stack="ha",site="Hybrid-VPC"} 3.25' in text.splitlines()
    assert text.endswith("# EOF\n")


def test_status_single_bridge_stack_has_no_failover_lines():
    text = prometheus(Report("dev", [_bridge("a", {})]))
    assert "hybrid_failover_total" not in text and "hybrid_failover_last_seconds{" not in text


class Fake:
    def __init__(self, out: str | None) -> None:
        self.out, self.commands = out, []

    def run(self, command: str, **_: object) -> RunResult:
        self.commands.append(command)
        if self.out is None:
            raise TransportError("198.51.100.11", "connection lost")
        return RunResult(0, self.out, "", 0.01)


def test_status_reads_the_state_file_over_the_node_transport():
    fake = Fake(json.dumps(B))
    assert _failover_state(fake) == B  # type: ignore[arg-type]
    assert fake.commands == ["cat /run/hybrid-failover/state.json 2>/dev/null"]
    assert _failover_state(Fake("")) == {}  # type: ignore[arg-type]  # no controller: a single bridge
    assert _failover_state(Fake(None)) == {}  # type: ignore[arg-type]
