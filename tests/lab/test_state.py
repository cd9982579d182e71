"""The lab's record and secrets, and how re-apply counts mutating commands (no root)."""

from __future__ import annotations

import stat
from pathlib import Path

from lab.state import ALPHABET, LabState, lab_dir, stack_name
from lab.up import mutating_commands
from softether.transport import RunRecord


def test_state_stack_name_from_name_or_path() -> None:
    assert stack_name("dev") == "dev"
    assert stack_name("tests/stacks/Pulumi.four-site.yaml") == "four-site"
    assert lab_dir("dev", Path("/x")) == Path("/x/dev")


def test_state_round_trip_and_missing_record(tmp_path: Path) -> None:
    assert LabState.load(tmp_path / "dev") is None
    st = LabState(tmp_path / "dev", "dev", "ab12", ["hc-ab12-inet"], {"db": 42}, {"k": 1})
    st.save()
    back = LabState.load(tmp_path / "dev")
    assert back is not None
    assert (back.stack, back.lab_id, back.namespaces, back.pids, back.extra) == (
        "dev",
        "ab12",
        ["hc-ab12-inet"],
        {"db": 42},
        {"k": 1},
    )


def test_state_secrets_are_stable_private_and_safe_for_vpncmd(tmp_path: Path) -> None:
    st = LabState(tmp_path / "dev")
    first = st.secrets(("admin/home", "user/HYBRID/aws"))
    again = LabState(tmp_path / "dev").secrets(("admin/home", "user/HYBRID/aws", "new"))
    assert {k: again[k] for k in first} == first
    assert len(set(again.values())) == 3
    # vpncmd reads an argument starting with '-' or '/' as a switch.
    assert all(set(v) <= set(ALPHABET) for v in again.values())
    mode = stat.S_IMODE((tmp_path / "dev" / "secrets.json").stat().st_mode)
    assert mode == 0o600


def _rec(command: str, stdin: str) -> RunRecord:
    return RunRecord(command=command, stdin=stdin, rc=0, seconds=0.1)


def test_up_counts_only_mutating_vpncmd_lines() -> None:
    records = [
        _rec(
            "vpncmd localhost:5555 /SERVER /CSV /IN:x",
            "ListenerList\nHubList\nHub HYBRID\nCascadeList",
        ),
        _rec("echo @@ethtool eth1; ethtool -k eth1", "ServerPasswordSet ***"),  # not vpncmd
        _rec(
            "vpncmd localhost:5555 /SERVER /CSV /IN:y",
            "Hub BRIDGE\nCascadeCreate HYBRID ***\nFlush",
        ),
    ]
    assert mutating_commands(records[:2]) == 0
    assert mutating_commands(records) == 2
