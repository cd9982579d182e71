"""Where a lab keeps what it started: one directory per stack, one JSON record, 0600 secrets.

The record lists every namespace *before* it is created and every process as soon as it runs,
so `lab down` after a crash still finds (and removes) exactly what this lab made, and nothing
else. The default root is on /run (tmpfs): it disappears on reboot, like the namespaces.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import string
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from topology import stack_file

ALPHABET = string.ascii_letters + string.digits
DEFAULT_ROOT = "/run/hybrid-lab"


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
        path = directory / "lab.json"
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        return cls(
            directory,
            data["stack"],
            data["lab_id"],
            data["namespaces"],
            data["pids"],
            data.get("extra", {}),
        )

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

    def secrets(self, names: tuple[str, ...]) -> dict[str, str]:
        """Random passwords for `names`, generated once per lab and kept in a 0600 file."""
        path = self.directory / "secrets.json"
        have: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
        missing = [n for n in names if n not in have]
        if missing:
            have.update({n: password() for n in missing})
            self.directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(have, f)
        return {n: have[n] for n in names}
