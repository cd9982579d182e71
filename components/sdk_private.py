"""The Pulumi SDK's private runtime hooks that `offline.run_program` needs, and nothing else.

The SDK has no public API to run a program in-process more than once per interpreter: these
names are the ones `pulumi.runtime.test` and the SDK's own tests use. Kept here so an SDK
upgrade that moves one of them breaks in one module (pyproject.toml keeps the SDK at 3.x).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pulumi
from pulumi.runtime import mocks as sdk_mocks
from pulumi.runtime import rpc, settings
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

# The wire form of a secret: {SECRET_SIG_KEY: SECRET_SIG, "value": ...}.
SECRET_SIG_KEY: str = rpc._special_sig_key
SECRET_SIG: str = rpc._special_secret_sig


def start(
    mocks: pulumi.runtime.Mocks,
    monitor: sdk_mocks.MockMonitor,
    *,
    project: str,
    stack: str,
    preview: bool,
) -> None:
    """Set up a fresh mocked run: a new root stack resource (the previous run's lives in a
    context var), the mocks and `monitor`, and none of a previous run's pending RPCs or
    outputs (what `pulumi.runtime.test` does)."""
    settings.ROOT.set(None)
    pulumi.runtime.set_mocks(mocks, project=project, stack=stack, preview=preview, monitor=monitor)
    settings.SETTINGS.rpc_manager.clear()  # pyright: ignore[reportAttributeAccessIssue]
    settings.SETTINGS.outputs.clear()  # pyright: ignore[reportAttributeAccessIssue]


def run(body: Callable[[], Awaitable[None]]) -> None:
    """Run the program `body` to completion, as the engine's language host would."""
    _sync_await(run_pulumi_func(body))
