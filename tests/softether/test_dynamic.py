"""The Pulumi dynamic provider, called directly; its pickle round-trips in a subprocess."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from pulumi.dynamic.dynamic import serialize_provider
from pulumi.output import Unknown

from lab.node import Node, Testbed
from softether.derive import NodeSpecs
from softether.dynamic import DRIFTED, READ_DEADLINE_S, SoftEtherProvider, spec_digest
from softether.spec import spec_to_dict

from .helpers import reference_specs

REPO = Path(__file__).resolve().parents[2]


def props_for(
    specs: NodeSpecs, host: str = "198.51.100.1", host_key: str = "ssh-ed25519 AAAA"
) -> dict[str, Any]:
    return {
        "spec": spec_to_dict(specs.server, reveal=True),
        "target": {"host": host, "host_key": host_key, "private_key": "KEY-MATERIAL"},
    }


def test_dynamic_diff_no_change_update_and_replace() -> None:
    specs = reference_specs()
    p = SoftEtherProvider()
    props = props_for(specs)
    olds = {"host": "198.51.100.1", "digest": spec_digest(props)}
    same = p.diff("id", olds, props)
    assert not same.changes and not same.replaces
    changed_spec = props_for(reference_specs(prefix="rotated"))
    d = p.diff("id", olds, changed_spec)
    assert d.changes and not d.replaces  # a new password is an in-place update
    moved = props_for(specs, host="198.51.100.7")
    r = p.diff("id", olds, moved)
    assert r.changes and r.replaces == ["target"]


def test_dynamic_diff_with_unknown_inputs_answers_changes_never_raises() -> None:
    # During preview the host hands unknown inputs in as pulumi.output.Unknown.
    props = props_for(reference_specs())
    olds = {"host": "198.51.100.1", "digest": spec_digest(props), "machine": "i-1"}
    p = SoftEtherProvider()
    spec = p.diff("id", olds, {**props, "spec": Unknown(), "machine": "i-1"})
    assert (spec.changes, spec.replaces) == (True, [])
    target = p.diff("id", olds, {**props, "target": Unknown(), "machine": "i-1"})
    assert (target.changes, target.replaces) == (True, [])
    machine = p.diff("id", olds, {**props, "target": Unknown(), "machine": Unknown()})
    assert (machine.changes, machine.replaces) == (True, ["machine"])
    rebuilt = p.diff("id", olds, {**props, "machine": "i-2"})
    assert (rebuilt.changes, rebuilt.replaces) == (True, ["machine"])
    assert not p.diff("id", olds, {**props, "machine": "i-1"}).changes


def test_dynamic_digest_is_keyed_and_normalised() -> None:
    specs = reference_specs()
    a = props_for(specs)
    # Same spec given with different key order / as re-parsed JSON: same digest.
    b = json.loads(json.dumps(a, sort_keys=True))
    assert spec_digest(a) == spec_digest(b)
    # The private key is not part of the identity (rotating it is not a config change).
    c = {**a, "target": {**a["target"], "private_key": "OTHER"}}
    assert spec_digest(a) == spec_digest(c)
    # Keyed with the admin password: another key, another digest for the same spec.
    spec = dict(a["spec"])
    other = {**a, "spec": {**spec, "admin_password": spec["admin_password"] + "x"}}
    assert spec_digest(a) != spec_digest(other)


def test_dynamic_provider_pickles_by_reference() -> None:
    blob = base64.b64decode(serialize_provider(SoftEtherProvider()))
    assert b"softether.dynamic" in blob
    assert b"_converge" not in blob  # module functions are referenced, not copied
    assert len(blob) < 2000


@pytest.mark.live
def test_dynamic_provider_create_in_subprocess_converges_live_node(
    testbed: Testbed, home: Node, aws: Node, live_specs: NodeSpecs
) -> None:
    """The pickled provider, loaded by a fresh interpreter (as the Pulumi engine does) inside
    the bridge's namespace, creates = converges the live home server over SSH."""
    blob = serialize_provider(SoftEtherProvider())
    props = {
        "spec": spec_to_dict(live_specs.server, reveal=True),
        "target": {
            "host": home.host,
            "host_key": home.host_key,
            "private_key": testbed.client_key,
            "connect_deadline_s": 20,
        },
    }
    code = (
        "import base64, json, sys, dill\n"
        "from pulumi.runtime.rpc import is_rpc_secret, unwrap_rpc_secret\n"
        "p = dill.loads(base64.b64decode(sys.argv[1]))\n"
        "props = json.load(sys.stdin)\n"
        "r = p.create(props)\n"
        "olds = {k: unwrap_rpc_secret(v) for k, v in r.outs.items()}\n"
        "d = p.diff(r.id, olds, props)\n"
        "public = {k: v for k, v in r.outs.items() if not is_rpc_secret(v)}\n"
        "secret = sorted(k for k, v in r.outs.items() if is_rpc_secret(v))\n"
        "print(json.dumps({'id': r.id, 'outs': public, 'secret': secret, 'changes': d.changes}))\n"
    )
    res = subprocess.run(
        ["ip", "netns", "exec", aws.netns, sys.executable, "-c", code, blob],
        input=json.dumps(props),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        check=False,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got["id"] == f"softether-server-{home.host}"
    assert got["outs"]["kind"] == "server" and got["outs"]["host"] == home.host
    assert got["changes"] is False
    # Spec and target (what `read` needs) are outputs only as Pulumi secrets.
    assert got["secret"] == ["spec", "target"]
    everything = res.stdout + res.stderr
    assert [s for s in live_specs.server.secrets() if s in everything] == []
    assert "PRIVATE KEY" not in everything


def test_dynamic_module_is_the_only_pulumi_importer() -> None:
    code = (
        "import sys, softether, softether.session, softether.derive, softether.__main__\n"
        "print(any(m == 'pulumi' or m.startswith('pulumi.') for m in sys.modules))"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert res.stdout.strip() == "False"


def test_dynamic_digest_leaves_out_how_a_node_is_reached() -> None:
    """A deadline is how the provider reaches a node, not what the node is: a new one is no
    change to plan (the same as the private key)."""
    a = props_for(reference_specs())
    b = {**a, "target": {**a["target"], "connect_deadline_s": 836.0, "refused_deadline_s": 836.0}}
    assert spec_digest(a) == spec_digest(b)


def test_dynamic_read_of_an_unreachable_node_finishes_and_says_why(tmp_path: Path) -> None:
    """`pulumi refresh` with a node down (a stopped VM, a port that refuses): Read answers
    after its short deadline, not the node's 836 s one; `drift` says why, the digest makes
    the next up converge the node (audit 2 #8)."""
    ident = tmp_path / "id"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(ident)], check=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    props = props_for(reference_specs(), host="127.0.0.1", host_key=ident.with_suffix(".pub").read_text())
    props["target"] |= {"port": port, "private_key": ident.read_text(), "connect_deadline_s": 836.0, "refused_deadline_s": 836.0}
    stored = {**props, "host": "127.0.0.1", "digest": spec_digest(props), "drift": []}
    t0 = time.monotonic()
    read = SoftEtherProvider().read("softether-server-127.0.0.1", stored)
    took = time.monotonic() - t0
    assert took < READ_DEADLINE_S + 15, took
    outs = read.outs or {}
    (line,) = outs["drift"]
    assert line.startswith("unreachable: 127.0.0.1:") and "refused" in line, line
    assert outs["digest"] == DRIFTED
    assert SoftEtherProvider().diff("softether-server-127.0.0.1", outs, props).changes  # the next up converges it
