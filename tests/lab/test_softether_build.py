"""lab.softether_build: the cache key, the cache, the mirror setting (no build runs here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from components import cloudinit
from lab import softether_build as sb
from lab.proc import LabError
from topology import SoftEtherOptions

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(sb.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_packages_apt_lists_every_build_dependency_of_the_install_script() -> None:
    listed = {x.strip() for x in (REPO / "packages.apt").read_text().splitlines()}
    assert set(cloudinit.BUILD_PACKAGES) - listed == set()


def test_build_key_follows_the_commit_and_the_build_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    pinned = SoftEtherOptions()
    key = sb.build_key(pinned)
    assert key.startswith(pinned.upstream_commit + "-")
    assert sb.build_key(SoftEtherOptions()) == key
    assert sb.build_key(SoftEtherOptions(upstream_commit="1" * 40)).startswith("1" * 40 + "-")
    monkeypatch.setattr(cloudinit, "CMAKE_FLAGS", cloudinit.CMAKE_FLAGS[:-1])
    assert sb.build_key(pinned) != key


def test_release_builds_once_then_uses_the_cache(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    builds: list[Path] = []

    def fake_build(options: SoftEtherOptions, target: Path, say: object) -> None:
        builds.append(target)
        binary = target / "root/usr/local/bin/vpnserver"
        binary.parent.mkdir(parents=True)
        binary.write_text("#!/bin/sh\n")

    options = SoftEtherOptions()
    with pytest.raises(LabError, match="is not built in"):
        sb.release(options, build=False)
    monkeypatch.setattr(sb, "build_upstream", fake_build)
    first = sb.release(options, say=lambda _: None)
    second = sb.release(options, say=lambda _: None)
    assert builds == [cache / sb.build_key(options)]
    assert first == second == sb.Release("upstream", "upstream 5.2.5188 10d6efcc", builds[0] / "root")


def test_release_record_round_trips() -> None:
    for r in (sb.Release("upstream", "upstream 5.2.5188 10d6efcc", Path("/x/root")), sb.Release("debian", "debian 5.01.9674")):
        assert sb.Release.from_record(r.to_record()) == r


def test_a_missing_mirror_is_named_before_anything_runs(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(sb.MIRROR_ENV, "/nonexistent/mirror.tar")
    with pytest.raises(LabError, match=r"HYBRID_SOFTETHER_MIRROR: /nonexistent/mirror.tar is not a file"):
        sb.release(SoftEtherOptions(), say=lambda _: None)
    assert [p.name for p in cache.iterdir()] == [f".{sb.build_key(SoftEtherOptions())}.lock"]
