"""The whole program run once per stack file under Pulumi's mocks, shared by every test."""

from __future__ import annotations

from pathlib import Path

import pytest

from components.testing import ProgramRun, run_program

ROOT = Path(__file__).resolve().parents[2]
DEV = ROOT / "stacks" / "Pulumi.dev.yaml"
FOUR_SITE = ROOT / "tests" / "stacks" / "Pulumi.four-site.yaml"

# The home VPN server's host key as the user pins it (config homeHostKey): with it the
# program also converges the home server.
HOME_HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAv8diZe/uasM5E/P9jAglIPEAaEYcpRirCBd10iAPxU"
PINNED = {"hybrid-cloud:homeHostKey": HOME_HOST_KEY}

_runs: dict[Path, ProgramRun] = {}


def program_run(path: Path) -> ProgramRun:
    """The run of the program for `path` (home host key pinned), once per test session."""
    if path not in _runs:
        _runs[path] = run_program(path, config=PINNED)
    return _runs[path]


@pytest.fixture(scope="module")
def dev() -> ProgramRun:
    return program_run(DEV)


@pytest.fixture(scope="module")
def four_site() -> ProgramRun:
    return program_run(FOUR_SITE)


@pytest.fixture(scope="module")
def home_host_key() -> str:
    return HOME_HOST_KEY


@pytest.fixture(scope="module")
def dev_unpinned() -> ProgramRun:
    """The reference stack before the user pinned the home server's host key."""
    return run_program(DEV)
