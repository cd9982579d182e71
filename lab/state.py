"""Where a lab keeps what it started: one directory per stack, one JSON record, 0600 secrets.

The record lists every namespace *before* it is created and every process as soon as it runs,
so `lab down` after a crash still finds (and removes) exactly what this lab made, and nothing
else. Every long-running process of the lab also carries the lab's mark (`MARK`=its
directory, in its environment), so `down` finds it even when the record is unreadable or
the namespace it ran in was deleted by hand. The default root is on /run (tmpfs): it
disappears on reboot, like the namespaces.

One operation at a time per lab directory: `operation()` holds an flock on `lock` in the
directory (released by the kernel when the holder exits, however it exits) and writes who
holds it there, so a second operation says who is in the way.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import string
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from topology import stack_file

from .proc import LabError

ALPHABET = string.ascii_letters + string.digits
DEFAULT_ROOT = "/run/hybrid-lab"
MARK = "HYBRID_LAB_MARK"


class RecordError(LabError):
    """The lab's record or secrets cannot be read; `lab down` still works."""


class LabBusy(LabError):
    """Another operation holds the lab's lock."""

    def __init__(self, directory: Path, pid: int | None, command: str) -> None:
        self.pid, self.command = pid, command
        who = f"pid {pid} ({command})" if pid else "another operation"
        super().__init__(f"lab {directory} is busy: {who} holds {directory / 'lock'}")


def mark(directory: Path) -> dict[str, str]:
    """The environment entry that marks a process as this lab's."""
    return {MARK: str(directory.resolve())}


def holder(directory: Path) -> tuple[int | None, str]:
    """(PID, command) written by the lock's current holder, (None, "") if unknown."""
    try:
        pid, _, command = (directory / "lock").read_text().strip().partition(" ")
    except OSError:
        return None, ""
    return (int(pid) if pid.isdigit() else None), command


@contextlib.contextmanager
def operation(directory: Path, what: str, create: bool = True) -> Iterator[None]:
    """Hold the lab's lock for one operation, or raise LabBusy naming the holder. A read-only
    operation (`create=False`) on a lab that does not exist creates nothing and locks nothing."""
    if not create and not directory.exists():
        yield
        return
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LabBusy(directory, *holder(directory)) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {what}: {' '.join(sys.argv)}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def stack_name(stack_ref: str) -> str:
    """`dev` -> dev; `tests/stacks/Pulumi.four-site.yaml` -> four-site."""
    stem = stack_file(stack_ref).name
    for prefix, suffix in (("Pulumi.", ".yaml"), ("Pulumi.", ".yml")):
        if stem.startswith(prefix) and stem.endswith(suffix):
            return stem[len(prefix) : -len(suffix)]
    return stem


def lab_dir(stack_ref: str, root: Path | None = None) -> Path:
    """`root` (default: $HYBRID_LAB_DIR, else /run/hybrid-lab) / the stack's name."""
    return (root or Path(os.environ.get("HYBRID_LAB_DIR", DEFAULT_ROOT))) / stack_name(stack_ref)


def password(length: int = 24) -> str:
    """Letters and digits only: vpncmd reads an argument starting with '-' or '/' as a switch
    (`ServerPasswordSet -x...` fails while its exit status says 0)."""
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


def remove_dirs(directory: Path, up_to: int = 1) -> None:
    """Delete `directory` and then up to `up_to` of its parents while they are empty."""
    shutil.rmtree(directory, ignore_errors=True)
    for parent in list(directory.parents)[:up_to]:
        try:
            parent.rmdir()
        except OSError:
            return


@dataclass
class LabState:
    """The record of one lab. `pids`: name -> PID of every long-running process it started."""

    directory: Path
    stack: str = ""
    lab_id: str = ""
    namespaces: list[str] = field(default_factory=list)
    pids: dict[str, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    # The node threads and the PaaS thread of `lab up` record PIDs at the same time.
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False, compare=False)

    @property
    def path(self) -> Path:
        return self.directory / "lab.json"

    @classmethod
    def load(cls, directory: Path) -> LabState | None:
        """The record, None if there is none; RecordError if it cannot be read."""
        path = directory / "lab.json"
        if not path.exists():
            return None
        data = _json(path)
        try:
            st = cls(
                directory,
                str(data["stack"]),
                str(data["lab_id"]),
                [str(n) for n in data["namespaces"]],
                {str(k): int(v) for k, v in data["pids"].items()},
                dict(data.get("extra", {})),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise RecordError(f"{path}: not a lab record ({type(e).__name__}: {e})") from None
        return st

    def record(self, pids: Mapping[str, int | None]) -> None:
        """Set (or, for None, forget) PIDs and save the record, atomically across threads."""
        with self._lock:
            for name, pid in pids.items():
                if pid is None:
                    self.pids.pop(name, None)
                else:
                    self.pids[name] = pid
            self.save()

    def save(self) -> None:
        with self._lock:
            self._write()

    def _write(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        os.chmod(self.directory, 0o755)  # the DB server (user mysql) needs to traverse it
        tmp = self.path.with_suffix(".tmp")
        body = {
            "stack": self.stack,
            "lab_id": self.lab_id,
            "namespaces": self.namespaces,
            "pids": self.pids,
            "extra": self.extra,
        }
        tmp.write_text(json.dumps(body, indent=2) + "\n")
        tmp.replace(self.path)

    def secrets(self, names: tuple[str, ...], create: bool = True) -> dict[str, str]:
        """Random passwords for `names`, generated once per lab and kept in a 0600 file.
        `create=False` (read-only callers) raises RecordError for a missing one instead."""
        path = self.directory / "secrets.json"
        have = _json(path) if path.exists() else {}
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in have.items()):
            raise RecordError(f"{path}: not a secrets record (name -> password)")
        missing = [n for n in names if n not in have]
        if missing and not create:
            raise RecordError(f"{path}: no secret {missing[0]!r} recorded for this lab")
        if missing:
            have.update({n: password() for n in missing})
            self.directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(have, f)
        return {n: have[n] for n in names}


def _json(path: Path) -> dict[str, Any]:
    """A JSON object from `path`, bounded; RecordError (one line) for anything else."""
    try:
        with path.open("rb") as f:
            data = json.loads(f.read(1 << 20).decode())
    except (OSError, ValueError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise RecordError(f"{path}: unreadable ({type(e).__name__}: {str(e)[:80]})") from None
    if not isinstance(data, dict):
        raise RecordError(f"{path}: not a JSON object")
    return data
