"""The harness's wire encoding, checked against the SDK's own decoder (no lab needed)."""

from __future__ import annotations

from pulumi.output import Unknown
from pulumi.runtime import rpc

from .harness import CALLS, UNKNOWN, _decode, _struct, _wire


def test_secrets_travel_in_wire_form_only_to_a_provider_that_accepts_them() -> None:
    props = {"spec": rpc.wrap_rpc_secret({"kind": "server", "port": 5555}), "host": "h"}
    kept = rpc.deserialize_properties(_struct(props, keep_secrets=True), True)
    assert rpc.is_rpc_secret(kept["spec"]) and rpc.unwrap_rpc_secret(kept["spec"]) == {"kind": "server", "port": 5555}
    stripped = rpc.deserialize_properties(_struct(props, keep_secrets=False), True)
    assert stripped == {"spec": {"kind": "server", "port": 5555}, "host": "h"}


def test_unknowns_are_the_engine_sentinel_and_decode_as_the_sdks_unknown() -> None:
    props = {"spec": UNKNOWN, "target": {"host": UNKNOWN}, "none": None}
    # The SDK registers no None-valued input.
    assert _wire(props, keep_secrets=False) == {"spec": rpc.UNKNOWN, "target": {"host": rpc.UNKNOWN}}
    back = _decode(_struct(props, keep_secrets=False))
    assert isinstance(back["spec"], Unknown) and isinstance(back["target"]["host"], Unknown)


def test_the_call_table_covers_every_operation_and_only_provider_methods() -> None:
    methods = {"Check", "Diff", "Create", "Update", "Read", "Delete"}
    assert {c.split()[0] for calls in CALLS.values() for c in calls} == methods
    assert all(not {"Create", "Update", "Delete"} & set(CALLS[op]) for op in CALLS if op.startswith("preview"))
