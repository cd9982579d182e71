"""The lab's record and secrets, and how re-apply counts mutating commands (no root)."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

from lab.state import ALPHABET, LabBusy, LabState, RecordError, lab_dir, operation, stack_name
from softether.transport import RunRecord

from ..softether.helpers import mutating_commands


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


@pytest.mark.parametrize(
    "body",
    [
        b'{"stack": "dev", "lab_id"',
        b"\xff\xfe",
        b"[]",
        b'{"stack": "dev"}',
        b'{"stack": "dev", "lab_id": "ab12", "namespaces": [], "pids": {"db": "x"}}',
    ],
    ids=["truncated", "binary", "not-an-object", "missing-keys", "bad-pid"],
)
def test_state_unreadable_record_is_one_line(body: bytes, tmp_path: Path) -> None:
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "lab.json").write_bytes(body)
    with pytest.raises(RecordError) as err:
        LabState.load(tmp_path / "dev")
    assert len(str(err.value).splitlines()) == 1 and "lab.json" in str(err.value)


def test_state_read_only_secrets_never_write(tmp_path: Path) -> None:
    st = LabState(tmp_path / "dev")
    with pytest.raises(RecordError, match="no secret 'admin/home'"):
        st.secrets(("admin/home",), create=False)
    assert not (tmp_path / "dev" / "secrets.json").exists()
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "secrets.json").write_text("not json")
    with pytest.raises(RecordError, match=r"secrets\.json"):
        st.secrets(("admin/home",))


def test_state_second_operation_names_the_holder(tmp_path: Path) -> None:
    with operation(tmp_path / "dev", "lab up"):
        with pytest.raises(LabBusy) as err, operation(tmp_path / "dev", "lab down"):
            pass
        assert err.value.pid == os.getpid() and err.value.command.startswith("lab up")
    with operation(tmp_path / "dev", "lab down"):  # released with its holder
        pass
    # A read-only operation on a lab that does not exist creates nothing.
    with operation(tmp_path / "none", "lab status", create=False):
        pass
    assert not (tmp_path / "none").exists()


@pytest.mark.parametrize("side_step", ["delete", "replace", "fifo", "remove-the-directory"])
def test_state_the_lock_cannot_be_side_stepped_by_its_file(side_step: str, tmp_path: Path) -> None:
    """Deleting or replacing what the lab keeps on disk during an operation lets no second
    operation in (issue 24, defect 2: it did, and two `lab up` ran side by side)."""
    directory = tmp_path / "dev"
    with operation(directory, "lab up"):
        if side_step == "delete":
            (directory / "lock").unlink()
        elif side_step in ("replace", "fifo"):
            if side_step == "fifo":  # reading who holds the lock must not block on it either
                os.mkfifo(tmp_path / "other")
            else:
                (tmp_path / "other").write_text("")
            os.replace(tmp_path / "other", directory / "lock")
        else:
            shutil.rmtree(directory)
        with pytest.raises(LabBusy) as err, operation(directory, "lab up"):
            pass
        assert err.value.pid == os.getpid()


def test_state_up_of_a_stack_that_does_not_load_leaves_no_directory(tmp_path: Path) -> None:
    from lab.up import up
    from topology import TopologyError

    with pytest.raises(TopologyError, match="nosuch"):
        up("nosuch", say=print, root=tmp_path / "labs")
    assert not (tmp_path / "labs").exists()  # it left `labs/nosuch/lock` behind
