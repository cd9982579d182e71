"""The whole program run once per stack file under Pulumi's mocks, shared by every test."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pulumi
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from components import program
from components.offline import ProgramRun, run_program
from topology import Stack

ROOT = Path(__file__).resolve().parents[2]
DEV = ROOT / "stacks" / "Pulumi.dev.yaml"
FOUR_SITE = ROOT / "tests" / "stacks" / "Pulumi.four-site.yaml"
HA = ROOT / "stacks" / "Pulumi.ha.yaml"

# The home VPN server's host key as the user pins it (config homeHostKey): with it the
# program also converges the home server.
HOME_HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAv8diZe/uasM5E/P9jAglIPEAaEYcpRirCBd10iAPxU"
PINNED = {"hybrid-cloud:homeHostKey": HOME_HOST_KEY}
# The home server's admin password, a stack secret (`pulumi config set --secret`).
HOME_ADMIN = {"hybrid-cloud:homeAdminPassword": "homeAdminFromStackSecret42"}


def _operator_key() -> str:
    """A fresh ed25519 key in OpenSSH format, as `ssh-keygen` writes it."""
    key = ed25519.Ed25519PrivateKey.generate()
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ).decode()


# The operator's SSH key, a stack secret (`pulumi config set --secret ... < ~/.ssh/hybrid-cloud`).
OPERATOR = {"hybrid-cloud:operatorKey": _operator_key()}
OPERATOR_PUBLIC = (
    serialization.load_ssh_private_key(OPERATOR["hybrid-cloud:operatorKey"].encode(), None)
    .public_key()
    .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    .decode()
)

_runs: dict[Path, ProgramRun] = {}


def program_run(path: Path) -> ProgramRun:
    """The run of the program for `path` (home host key pinned, admin password and operator
    key set), once per test session."""
    if path not in _runs:
        _runs[path] = run_program(path, config=PINNED, secrets=HOME_ADMIN | OPERATOR)
    return _runs[path]


@pytest.fixture(scope="module")
def dev() -> ProgramRun:
    return program_run(DEV)


@pytest.fixture(scope="module")
def four_site() -> ProgramRun:
    return program_run(FOUR_SITE)


@pytest.fixture(scope="module")
def ha() -> ProgramRun:
    """stacks/Pulumi.ha.yaml: a bridge pair in each cloud site."""
    return program_run(HA)


@pytest.fixture(scope="module")
def home_host_key() -> str:
    return HOME_HOST_KEY


@pytest.fixture(scope="module")
def dev_unpinned() -> ProgramRun:
    """The reference stack before the user pinned the home server's host key."""
    return run_program(DEV)


# Each resource's options as the SDK sends them with its registration, by (type, name). The
# mocks see inputs only; a stack transformation registered before the program builds sees
# every resource's final `ResourceOptions` (`delete_before_replace`, `replace_on_changes`...).
Options = dict[tuple[str, str], pulumi.ResourceOptions]


def recording(options: Options) -> Callable[[Stack], Mapping[str, Any]]:
    """`program.build` that first registers a transformation filling `options`."""

    def record(args: pulumi.ResourceTransformationArgs) -> None:
        options[(args.type_, args.name)] = args.opts

    def build(stack: Stack) -> Mapping[str, Any]:
        pulumi.runtime.register_stack_transformation(record)
        return program.build(stack)

    return build


@pytest.fixture(scope="module", params=[DEV, FOUR_SITE, HA], ids=["dev", "four-site", "ha"])
def with_options(request: pytest.FixtureRequest) -> tuple[ProgramRun, Options]:
    """A run of each stack file (host key pinned) with the options of every resource."""
    options: Options = {}
    return run_program(request.param, recording(options), config=PINNED), options
