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
    assert err == f"dev: {bad}[0]: expected an update with kind and startTime\n"


def test_ttl_cli_judges_a_stack_file_that_no_longer_validates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    # Rules change with the date: RDS 5.7 left standard support, so the topology is refused,
    # but the time to live is read on its own.
    text = (Path(__file__).parents[1] / "stacks" / "Pulumi.dev.yaml").read_text()
    stale = tmp_path / "Pulumi.stale.yaml"
    stale.write_text(text.replace('engineVersion: "8.4"', 'engineVersion: "5.7"'))
    rc = main(["ttl", str(stale), "--history", str(HISTORY), "--now", "2026-11-24T18:20:00Z"])
    assert (rc, capsys.readouterr().out) == (
        0,
        "stale: EXPIRED: last update 2026-11-24 10:14 UTC, ttl 8 h: expired 0.1 h ago\n",
    )


def test_ttl_cli_bad_ttl_hours_is_one_line_naming_the_stack_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    bad = tmp_path / "Pulumi.typo.yaml"
    bad.write_text("config:\n  hybrid-cloud:ttlHours: eight\n")
    rc = main(["ttl", str(bad), "--history", str(HISTORY)])
    assert rc == 2
    assert capsys.readouterr().err.startswith(f"{bad}: ttlHours: 'eight' is invalid")


def _pages(entries: list[dict], calls: list[list[str]]):
    """A fake `pulumi`: `stack history --page-size N --page P`, newest first."""
    newest = sorted(entries, key=lambda e: e["startTime"], reverse=True)

    def run(args):
        calls.append(list(args))
        size, page = int(args[args.index("--page-size") + 1]), int(args[args.index("--page") + 1])
        return 0, json.dumps(newest[(page - 1) * size : page * size]), ""

    return run


def test_ttl_pulumi_history_pages_back_to_the_last_update():
    from cli.ttl import PAGE_SIZE, pulumi_history

    t0 = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    entries = [entry("update", t0)] + [
        entry("refresh", t0 + dt.timedelta(hours=i)) for i in range(1, PAGE_SIZE + 20)
    ]
    calls: list[list[str]] = []
    history = pulumi_history("dev", _pages(entries, calls))
    assert [c[c.index("--page") + 1] for c in calls] == ["1", "2"]
    assert history is not None and history[0].kind == "update"
    assert verdict("dev", 8, history, t0 + dt.timedelta(days=30)).expired


def test_ttl_pulumi_history_stops_at_the_last_page_and_is_bounded():
    from cli.ttl import MAX_PAGES, PAGE_SIZE, pulumi_history

    t0 = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    calls: list[list[str]] = []
    refreshes = [entry("refresh", t0 + dt.timedelta(hours=i)) for i in range(3)]
    assert verdict("dev", 1, pulumi_history("dev", _pages(refreshes, calls)) or [], t0).reason == "never deployed"
    assert len(calls) == 1
    endless = [entry("refresh", t0 + dt.timedelta(minutes=i)) for i in range(MAX_PAGES * PAGE_SIZE)]
    calls.clear()
    with pytest.raises(HistoryError) as e:
        pulumi_history("dev", _pages(endless, calls))
    assert len(calls) == MAX_PAGES
    assert f"no update in its last {MAX_PAGES * PAGE_SIZE} entries" in str(e.value)


def test_ttl_pulumi_history_tells_a_missing_stack_from_a_failure():
    from cli.ttl import pulumi_history

    assert pulumi_history("dev", lambda a: (255, "", "error: no stack named 'dev' found\n")) is None
    with pytest.raises(HistoryError) as e:
        pulumi_history("dev", lambda a: (255, "", "\nerror: [401] Unauthorized\n"))
    assert str(e.value).endswith("failed: error: [401] Unauthorized")
