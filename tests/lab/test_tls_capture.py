"""The ServerHello parser of lab.tls_capture, on hand-built records."""

from __future__ import annotations

import struct

from lab.tls_capture import parse_server_hello


def _server_hello(extensions: list[tuple[int, bytes]], session_id: bytes = b"\x01" * 32) -> bytes:
    ext = b"".join(struct.pack("!HH", k, len(v)) + v for k, v in extensions)
    body = b"\x03\x03" + b"\x00" * 32 + bytes([len(session_id)]) + session_id
    body += b"\x13\x02" + b"\x00" + struct.pack("!H", len(ext)) + ext
    hs = b"\x02" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x03" + struct.pack("!H", len(hs)) + hs


def test_parse_server_hello_reads_the_key_share_group() -> None:
    share = struct.pack("!HH", 0x11EC, 4) + b"abcd"
    record = _server_hello([(0x002B, b"\x03\x04"), (0x0033, share)])
    assert parse_server_hello(record) == (True, 0x11EC)


def test_parse_server_hello_without_tls13_or_key_share() -> None:
    assert parse_server_hello(_server_hello([], session_id=b"")) == (False, None)


def test_parse_server_hello_ignores_other_records() -> None:
    client_hello = bytearray(_server_hello([(0x0033, b"\x00\x1d")]))
    client_hello[5] = 0x01
    assert parse_server_hello(bytes(client_hello)) is None
    assert parse_server_hello(b"\x17\x03\x03\x00\x10" + b"\x00" * 16) is None
