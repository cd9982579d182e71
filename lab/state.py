"""Where a lab keeps what it started: one directory per stack, one JSON record, 0600 secrets.

The record lists every namespace *before* it is created and every process as soon as it runs,
so `lab down` after a crash still finds (and removes) exactly what this lab made, and nothing
else. Every long-running process of the lab also carries the lab's mark (`MARK`=its
directory, in its environment), so `down` finds it even when the record is unreadable or
the namespace it ran in was deleted by hand. The default root is on /run (tmpfs): it
disappears on reboot, like the namespaces.

One operation at a time per lab directory: `operation()` holds the lab's lock, an abstract
Unix socket named after the directory (a kernel object with no file: deleting or replacing
anything on disk lets no second operation in; released by the kernel when the holder exits,
however it exits), and writes who holds it in `lock`, so a second operation says who is in
the way. That line is only a description: the holder's PID is the kernel's (`holder`).
A recorded PID is the lab's process only while it still is (`LabState.live`: the lab's mark
or namespace, and the start time recorded with it).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import secrets
import shutil
import socket
import string
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from topology import stack_file

from . import proc
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
        super().__init__(f"lab {directory} is busy: {who} holds its lock")


def mark(directory: Path) -> dict[str, str]:
    """The environment entry that marks a process as this lab's."""
    return {MARK: str(directory.resolve())}


def mark_entry(directory: Path) -> bytes:
    """The mark as it reads in /proc/PID/environ."""
    return next(f"{k}={v}".encode() for k, v in mark(directory).items())


def lock_name(directory: Path) -> str:
    """The abstract socket (leading NUL) that is the lab's lock, named after its directory."""
    digest = hashlib.sha256(str(directory.resolve()).encode()).hexdigest()[:32]
    return f"\0hybrid-lab-{digest}"


def holder(directory: Path) -> tuple[int | None, str]:
    """(PID, what it does) of the process holding the lab's lock, (None, "") if none does.

    The PID is the kernel's (the process with the lock's socket), never the `lock` line's: a
    stale or edited line, or one written in another PID namespace, names someone else. The
    line's operation is taken when its PID is the holder's in any PID namespace the holder
    is in; otherwise what the holder does is its command line."""
    pids = proc.socket_holders(lock_name(directory)[1:])
    if not pids:
        return None, ""
    try:  # non-blocking: whatever stands at `lock` now (a FIFO) must not hold us
        fd = os.open(directory / "lock", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as f:
            line = f.read(4096).decode(errors="replace").strip()
    except OSError:
        line = ""
    pid, _, what = line.partition(" ")
    for p in pids:
        if pid.isdigit() and int(pid) in proc.ns_pids(p):
            return p, what
    return pids[0], proc.cmdline(pids[0])


@contextlib.contextmanager
def operation(directory: Path, what: str, create: bool = True) -> Iterator[None]:
    """Hold the lab's lock for one operation, or raise LabBusy naming the holder.

    `create=False` (read-only operations, `down`) makes no directory. An operation that made
    the directory and left nothing else in it removes it again (e.g. `lab up` of a stack
    file that does not load)."""
    lock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        try:
            lock.bind(lock_name(directory))
        except OSError as e:
            if e.errno != errno.EADDRINUSE:
                raise
            raise LabBusy(directory, *holder(directory)) from None
        made = create and not directory.exists()
        if create:
            _writing(directory, lambda: directory.mkdir(parents=True, exist_ok=True))
        if directory.exists():
            # Only a description (a full disk must not stop `down`); put in place by rename, so
            # whatever stands at `lock` (a FIFO, a symlink) is replaced, not opened.
            with contextlib.suppress(OSError):
                tmp = directory / ".lock.tmp"
                tmp.unlink(missing_ok=True)
                tmp.write_text(f"{os.getpid()} {what}: {' '.join(sys.argv)}\n")
                tmp.replace(directory / "lock")
        try:
            yield
        finally:
            if made and {p.name for p in _entries(directory)} <= {"lock", ".lock.tmp"}:
                remove_dirs(directory)
    finally:
        lock.close()


def _entries(directory: Path) -> list[Path]:
    try:
        return list(directory.iterdir())
    except OSError:
        return []


def _writing(path: Path, write: Callable[[], object]) -> None:
    """Run `write`; a failure to write `path` (a full disk, a read-only one) is one line."""
    try:
        write()
    except OSError as e:
        raise RecordError(f"cannot write {path}: {e.strerror}") from None


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
    """The record of one lab. `pids`: name -> PID of every long-running process it started;
    `started`: name -> that process's start time (`lab.proc.start_time`)."""

    directory: Path
    stack: str = ""
    lab_id: str = ""
    namespaces: list[str] = field(default_factory=list)
    pids: dict[str, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    started: dict[str, int] = field(default_factory=dict)
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
                {str(k): int(v) for k, v in data.get("started", {}).items()},
            )
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise RecordError(f"{path}: not a lab record ({type(e).__name__}: {e})") from None
        _check_extra(path, st.extra)
        return st

    def owns(self, pid: int | None) -> bool:
        """`pid` lives and is provably this lab's: its mark, or one of its namespaces."""
        return proc.owned(pid, {mark_entry(self.directory)}, self.namespaces)

    def live(self, name: str) -> int | None:
        """The recorded PID of `name` while it is still that process: the lab's (`owns`)
        and started when the recorded one did (else a reused PID: someone else's)."""
        pid = self.pids.get(name)
        if pid is None or not self.owns(pid):
            return None
        started = self.started.get(name)
        return pid if started is None or proc.start_time(pid) == started else None

    def record(self, pids: Mapping[str, int | None]) -> None:
        """Set (or, for None, forget) PIDs, with their start times, and save the record,
        atomically across threads."""
        with self._lock:
            for name, pid in pids.items():
                started = proc.start_time(pid) if pid is not None else None
                if pid is None:
                    self.pids.pop(name, None)
                else:
                    self.pids[name] = pid
                if started is None:
                    self.started.pop(name, None)
                else:
                    self.started[name] = started
            self.save()

    def save(self) -> None:
        with self._lock:
            self._write()

    def _write(self) -> None:
        body = {
            "stack": self.stack,
            "lab_id": self.lab_id,
            "namespaces": self.namespaces,
            "pids": self.pids,
            "started": self.started,
            "extra": self.extra,
        }
        tmp = self.path.with_suffix(".tmp")

        def write() -> None:
            self.directory.mkdir(parents=True, exist_ok=True)
            os.chmod(self.directory, 0o755)  # the DB server (user mysql) needs to traverse it
            tmp.write_text(json.dumps(body, indent=2) + "\n")
            tmp.replace(self.path)

        _writing(self.path, write)

    def secrets(self, names: tuple[str, ...], create: bool = True) -> dict[str, str]:
        """Random passwords for `names`, generated once per lab and kept in a 0600 file.
        `create=False` (read-only callers) raises RecordError for a missing one instead."""
        have = self._secrets()
        missing = [n for n in names if n not in have]
        if missing and not create:
            raise RecordError(f"{self._secrets_path}: no secret {missing[0]!r} recorded for this lab")
        if missing:
            self._write_secrets(have | {n: password() for n in missing})
            have = self._secrets()
        return {n: have[n] for n in names}

    def renew(self, names: tuple[str, ...]) -> dict[str, str]:
        """New random passwords for `names` (a rotation, lab/rotate.py); returns the old ones."""
        have = self._secrets()
        self._write_secrets(have | {n: password() for n in names})
        return {n: have[n] for n in names if n in have}

    @property
    def _secrets_path(self) -> Path:
        return self.directory / "secrets.json"

    def _secrets(self) -> dict[str, str]:
        path = self._secrets_path
        have = _json(path) if path.exists() else {}
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in have.items()):
            raise RecordError(f"{path}: not a secrets record (name -> password)")
        return have

    def _write_secrets(self, have: dict[str, str]) -> None:
        path = self._secrets_path

        def write() -> None:  # atomically: a failed write keeps the passwords there are
            self.directory.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(have, f)
            tmp.replace(path)

        _writing(path, write)


def _check_extra(path: Path, extra: dict[str, Any]) -> None:
    """What the lab reads from `extra`, or RecordError: `softether` (node -> the release it
    was started with, `lab.softether_build.Release.to_record`), `source`, `preload`."""
    releases = extra.get("softether", {})
    if not (
        isinstance(releases, dict)
        and all(
            isinstance(r, dict)
            and r.get("source") in ("upstream", "debian")
            and all(isinstance(r.get(k), str) for k in ("label", "root"))
            for r in releases.values()
        )
    ):
        shown = json.dumps(releases)[:60]
        raise RecordError(f"{path}: extra.softether: not a release per node ({shown})")
    if extra.get("source") not in (None, "upstream", "debian"):
        raise RecordError(f"{path}: extra.source: {extra['source']!r} is not upstream or debian")
    if not isinstance(extra.get("preload", True), bool):
        raise RecordError(f"{path}: extra.preload: {extra['preload']!r} is not true or false")


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
