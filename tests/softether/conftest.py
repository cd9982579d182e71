"""Live fixtures: real SoftEther nodes in network namespaces, reached over real SSH.

Every namespace is created by the fixture and deleted by its finalizer, also on failure.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.node import Node, Testbed
from softether.derive import NodeSpecs
from softether.session import Session

from .helpers import reference_specs


@pytest.fixture(scope="module")
def testbed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    with Testbed(Path(tmp_path_factory.mktemp("softether-live"))) as bed:
        yield bed


@pytest.fixture(scope="module")
def home(testbed: Testbed) -> Node:
    return testbed.add("home", "server", "198.51.100.1/24", lan_device="eth1")


@pytest.fixture(scope="module")
def aws(testbed: Testbed) -> Node:
    return testbed.add("aws", "bridge", "198.51.100.2/24")


@pytest.fixture(scope="module")
def live_specs(testbed: Testbed, home: Node, aws: Node) -> NodeSpecs:
    # Secrets unique to this run: a leak check must not match a fixture's fake password.
    # The cascades pin the certificate the fresh server generated for itself.
    plain = reference_specs(home.host, aws.restart_command, prefix=f"live-{testbed.run}-pw")
    cert = Session(testbed.transport(home), plain.server).server_certificate()
    return reference_specs(
        home.host, aws.restart_command, prefix=f"live-{testbed.run}-pw", server_cert=cert
    )
