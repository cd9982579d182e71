"""`hybrid ttl`: has a stack outlived its `hybrid-cloud:ttlHours`? (used by destroy.yml)

Pure: `verdict(name, ttl_hours, history, now)` reads `pulumi stack history --json` (a list of
updates: kind, startTime, endTime, result); `pulumi_history` pages through it with the CLI. The clock starts at the end of the last `update`
or `import` (the operations that create resources), whatever its result: a failed `up` can
leave billable resources too. A succeeded `destroy` after it means nothing is left to destroy.
An operation still running is never judged expired.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from topology import stack_file
from topology.load import read_ttl_hours

from .args import add_stack, stack_ref

CREATING = ("update", "import")


class HistoryError(ValueError):
    """History JSON that is not what `pulumi stack history --json` prints."""


@dataclass(frozen=True)
class Update:
    kind: str
    result: str
    start: dt.datetime
    end: dt.datetime | None

    @property
    def at(self) -> dt.datetime:
        return self.end or self.start


@dataclass(frozen=True)
class Verdict:
    stack: str
    ttl_hours: float | None
    last_update: dt.datetime | None
    expires: dt.datetime | None
    expired: bool
    reason: str

    def line(self) -> str:
        return f"{self.stack}: {'EXPIRED' if self.expired else 'keep'}: {self.reason}"

    def to_json(self) -> dict[str, Any]:
        def iso(t: dt.datetime | None) -> str | None:
            return t.isoformat().replace("+00:00", "Z") if t else None

        return {
            "stack": self.stack,
            "ttl_hours": self.ttl_hours,
            "last_update": iso(self.last_update),
            "expires": iso(self.expires),
            "expired": self.expired,
            "reason": self.reason,
        }


def _time(value: Any, where: str) -> dt.datetime:
    try:
        t = dt.datetime.fromisoformat(str(value))
    except ValueError:
        raise HistoryError(f"{where}: {value!r} is not an ISO 8601 time") from None
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


def parse_history(text: str, source: str) -> list[Update]:
    """The updates of `pulumi stack history --json` output (any order), oldest first."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise HistoryError(f"{source}: not JSON: {e.msg} (line {e.lineno})") from None
    if not isinstance(doc, list):
        raise HistoryError(
            f"{source}: expected a JSON list of updates (pulumi stack history --json)"
        )
    out: list[Update] = []
    for i, item in enumerate(doc):
        where = f"{source}[{i}]"
        if not isinstance(item, dict) or "kind" not in item or "startTime" not in item:
            raise HistoryError(f"{where}: expected an update with kind and startTime")
        end = item.get("endTime")
        out.append(
            Update(
                kind=str(item["kind"]),
                result=str(item.get("result", "")),
                start=_time(item["startTime"], f"{where}.startTime"),
                end=_time(end, f"{where}.endTime") if end else None,
            )
        )
    return sorted(out, key=lambda u: u.start)


def verdict(
    stack: str, ttl_hours: float | None, history: Sequence[Update], now: dt.datetime
) -> Verdict:
    """Whether `stack` is due for destruction at `now` (timezone-aware)."""
    if ttl_hours is None:
        return Verdict(
            stack, None, None, None, False, "no hybrid-cloud:ttlHours: never destroyed on a timer"
        )
    creating = [u for u in history if u.kind in CREATING]
    if not creating:
        return Verdict(stack, ttl_hours, None, None, False, "never deployed")
    last = creating[-1]
    after = [u for u in history if u.start >= last.start and u is not last]
    if last.result == "in-progress" or any(u.result == "in-progress" for u in after):
        return Verdict(stack, ttl_hours, last.at, None, False, "an operation is in progress")
    if any(u.kind == "destroy" and u.result == "succeeded" for u in after):
        return Verdict(
            stack,
            ttl_hours,
            last.at,
            None,
            False,
            f"already destroyed after the {last.kind} of {last.at:%Y-%m-%d %H:%M} UTC",
        )
    expires = last.at + dt.timedelta(hours=ttl_hours)
    left = (expires - now).total_seconds() / 3600
    when = f"last {last.kind} {last.at:%Y-%m-%d %H:%M} UTC, ttl {ttl_hours:g} h"
    if left <= 0:
        return Verdict(
            stack, ttl_hours, last.at, expires, True, f"{when}: expired {-left:.1f} h ago"
        )
    return Verdict(stack, ttl_hours, last.at, expires, False, f"{when}: {left:.1f} h left")


# `pulumi stack history` prints 10 entries unless told otherwise; the job pages through
# (newest first) until it reaches the last creating operation, bounded.
PAGE_SIZE = 100
MAX_PAGES = 20
PULUMI_TIMEOUT_S = 120
NO_STACK = "no stack named"

# (arguments) -> (exit code, stdout, stderr): the `pulumi` command, or a fake in the tests.
Runner = Callable[[Sequence[str]], tuple[int, str, str]]


def run_pulumi(args: Sequence[str]) -> tuple[int, str, str]:
    try:
        done = subprocess.run(
            ["pulumi", *args], capture_output=True, text=True, timeout=PULUMI_TIMEOUT_S, check=False
        )
    except FileNotFoundError:
        return 127, "", "pulumi: command not found"
    except subprocess.TimeoutExpired:
        return 124, "", f"pulumi {' '.join(args)}: no answer in {PULUMI_TIMEOUT_S} s"
    return done.returncode, done.stdout, done.stderr


def pulumi_history(stack: str, run: Runner = run_pulumi) -> list[Update] | None:
    """The stack's history back to its last creating operation (or all of it), read page by
    page from `pulumi stack history`; None when the backend has no such stack. HistoryError
    when pulumi fails otherwise, or when MAX_PAGES pages hold no creating operation."""
    updates: list[Update] = []
    for page in range(1, MAX_PAGES + 1):
        args = ["stack", "history", "--stack", stack, "--json", "--page-size", str(PAGE_SIZE), "--page", str(page)]
        source = f"pulumi {' '.join(args)}"
        rc, out, err = run(args)
        if rc != 0:
            if page == 1 and NO_STACK in err:
                return None
            reason = next((line for line in err.splitlines() if line.strip()), f"exit {rc}")
            raise HistoryError(f"{source}: failed: {reason}")
        batch = parse_history(out or "[]", source)
        updates += batch
        if len(batch) < PAGE_SIZE or any(u.kind in CREATING for u in batch):
            return sorted(updates, key=lambda u: u.start)
    raise HistoryError(
        f"pulumi stack history --stack {stack}: no update in its last {MAX_PAGES * PAGE_SIZE} entries"
    )


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ttl", help="is a deployed stack past its ttlHours? (reads pulumi stack history --json)"
    )
    add_stack(p)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--history", help="`pulumi stack history --json` output: a file, or - for stdin"
    )
    source.add_argument(
        "--pulumi",
        action="store_true",
        help="run `pulumi stack history` itself, page by page, back to the last update",
    )
    p.add_argument("--now", help="judge at this ISO 8601 time instead of now (UTC if no offset)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=ttl)


def ttl(args: argparse.Namespace) -> int:
    """Judge one stack by its `ttlHours` alone (the rest of its stack file may be invalid:
    rules change with the date). Exit 0 with the verdict, 2 with one line naming the stack
    when it cannot be judged."""
    path = stack_file(stack_ref(args))
    name = path.name.removeprefix("Pulumi.").removesuffix(".yaml")
    hours = read_ttl_hours(path)
    try:
        now = _time(args.now, "--now") if args.now else dt.datetime.now(dt.UTC)
        if args.pulumi:
            history = pulumi_history(name)
            if history is None:
                v = Verdict(name, hours, None, None, False, "no stack in the backend: nothing to destroy")
                print(json.dumps(v.to_json()) if args.json else v.line())
                return 0
        else:
            source = "stdin" if args.history == "-" else args.history
            text = sys.stdin.read() if args.history == "-" else Path(args.history).read_text()
            history = parse_history(text, source)
    except OSError as e:
        print(f"{name}: {args.history}: cannot read: {e.strerror}", file=sys.stderr)
        return 2
    except HistoryError as e:
        print(f"{name}: {e}", file=sys.stderr)
        return 2
    v = verdict(name, hours, history, now)
    print(json.dumps(v.to_json()) if args.json else v.line())
    return 0
