"""`hybrid ttl`: which deployed stacks are past their ttlHours, from `pulumi stack history --json`."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from cli.main import main
from cli.ttl import HistoryError, Update, parse_history, verdict

HISTORY = Path(__file__).parent / "lifecycle" / "history-dev.json"
# The end of the last `update` in HISTORY: the clock starts there, not at the later refresh.
LAST_UP = dt.datetime(2026, 11, 24, 10, 14, 31, tzinfo=dt.UTC)


def history() -> list[Update]:
    return parse_history(HISTORY.read_text(), str(HISTORY))


def entry(kind: str, start: dt.datetime, result: str = "succeeded", minutes: int = 10) -> dict:
    return {
        "kind": kind,
        "startTime": start.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "message": "",
        "environment": {"exec.kind": "cli"},
        "config": {},
        "result": result,
        **(
            {}
            if result == "in-progress"
            else {
                "endTime": (start + dt.timedelta(minutes=minutes)).strftime(
                    "%Y-%m-%dT%H:%M:%S.000Z"
                )
            }
        ),
    }


def test_ttl_parse_history_orders_updates_oldest_first():
    kinds = [(u.kind, u.start.day) for u in history()]
    assert kinds == [("update", 23), ("destroy", 23), ("update", 24), ("refresh", 24)]
    assert history()[2].end == LAST_UP


def test_ttl_stack_past_its_ttl_is_expired():
    v = verdict("dev", 8, history(), LAST_UP + dt.timedelta(hours=8, minutes=1))
    assert v.expired
    assert v.expires == LAST_UP + dt.timedelta(hours=8)
    assert "expired 0.0 h ago" in v.reason


def test_ttl_stack_inside_its_ttl_is_kept():
    v = verdict("dev", 8, history(), LAST_UP + dt.timedelta(hours=7))
    assert not v.expired
    assert "1.0 h left" in v.reason


def test_ttl_expires_exactly_at_the_deadline():
    assert verdict("dev", 8, history(), LAST_UP + dt.timedelta(hours=8)).expired


def test_ttl_refresh_does_not_restart_the_clock():
    # The refresh at 13:02 is newer than the update; only creating operations count.
    v = verdict("dev", 4, history(), dt.datetime(2026, 11, 24, 15, 0, tzinfo=dt.UTC))
    assert v.last_update == LAST_UP
    assert v.expired


def test_ttl_stack_without_ttl_is_never_expired():
    v = verdict("prod", None, history(), LAST_UP + dt.timedelta(days=365))
    assert not v.expired
    assert "no hybrid-cloud:ttlHours" in v.reason


def test_ttl_destroyed_stack_is_not_destroyed_again():
    t0 = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    h = parse_history(
        json.dumps([entry("update", t0), entry("destroy", t0 + dt.timedelta(hours=2))]), "h"
    )
    v = verdict("dev", 1, h, t0 + dt.timedelta(days=3))
    assert not v.expired
    assert "already destroyed" in v.reason


def test_ttl_failed_update_starts_the_clock():
    # A failed `up` can leave billable resources behind.
    t0 = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    h = parse_history(json.dumps([entry("update", t0, "failed")]), "h")
    assert verdict("dev", 1, h, t0 + dt.timedelta(hours=2)).expired


def test_ttl_operation_in_progress_is_never_expired():
    t0 = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    h = parse_history(
        json.dumps(
            [entry("update", t0), entry("update", t0 + dt.timedelta(hours=5), "in-progress")]
        ),
        "h",
    )
    v = verdict("dev", 1, h, t0 + dt.timedelta(hours=6))
    assert not v.expired
    assert "in progress" in v.reason


def test_ttl_never_deployed_stack_is_kept():
    assert not verdict("dev", 1, [], dt.datetime.now(dt.UTC)).expired
    h = parse_history(json.dumps([entry("refresh", dt.datetime(2026, 1, 1, tzinfo=dt.UTC))]), "h")
    assert verdict("dev", 1, h, dt.datetime.now(dt.UTC)).reason == "never deployed"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "h: not JSON: Expecting property name enclosed in double quotes (line 1)"),
        ('{"kind": "update"}', "h: expected a JSON list of updates (pulumi stack history --json)"),
        ('[{"kind": "update"}]', "h[0]: expected an update with kind and startTime"),
        (
            '[{"kind": "update", "startTime": "yesterday"}]',
            "h[0].startTime: 'yesterday' is not an ISO 8601 time",
        ),
    ],
)
def test_ttl_parse_history_rejects_what_pulumi_does_not_print(text: str, message: str):
    with pytest.raises(HistoryError) as e:
        parse_history(text, "h")
    assert str(e.value) == message


def test_ttl_cli_prints_the_verdict_as_json(capsys: pytest.CaptureFixture[str]):
    rc = main(
        [
            "ttl",
            "--stack",
            "dev",
            "--history",
            str(HISTORY),
            "--now",
            "2026-11-24T18:20:00Z",
            "--json",
        ]
    )
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert out == {
        "stack": "dev",
        "ttl_hours": 8.0,
        "last_update": "2026-11-24T10:14:31Z",
        "expires": "2026-11-24T18:14:31Z",
        "expired": True,
        "reason": "last update 2026-11-24 10:14 UTC, ttl 8 h: expired 0.1 h ago",
    }


def test_ttl_cli_bad_history_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    bad = tmp_path / "h.json"
    bad.write_text("[1]")
    rc = main(["ttl", "--stack", "dev", "--history", str(bad)])
    err = capsys.readouterr().err
    assert rc == 2
    assert err == f"{bad}[0]: expected an update with kind and startTime\n"
