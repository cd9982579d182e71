"""lab.softether_build: the cache key, the cache, the mirror setting (no build runs here)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
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


def _fake_build(builds: list[Path]) -> Callable[[SoftEtherOptions, Path, object], None]:
    """A stand-in for the install script: a few files under root/usr/local, as a build
    leaves them (a binary, a library, a symlink to it)."""

    def build(options: SoftEtherOptions, target: Path, say: object) -> None:
        builds.append(target)
        shutil.rmtree(target, ignore_errors=True)  # as the real one replaces it
        local = target / "root/usr/local"
        (local / "bin").mkdir(parents=True)
        (local / "lib").mkdir()
        (local / "bin/vpnserver").write_text("#!/bin/sh\n")
        (local / "bin/vpncmd").write_text("#!/bin/sh\n")
        (local / "lib/libcedar.so.5").write_bytes(bytes(range(256)) * 1024)
        (local / "lib/libcedar.so").symlink_to("libcedar.so.5")

    return build


@pytest.mark.parametrize("damage", ["zeroed", "deleted", "relinked"])
def test_release_knows_a_damaged_cache_and_rebuilds_it(
    damage: str, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 24, defect 7: a library with 64 KiB zeroed, or half the files deleted, was
    reported as a good build in 0.3 s and the lab failed later naming nothing."""
    builds: list[Path] = []
    monkeypatch.setattr(sb, "build_upstream", _fake_build(builds))
    options = SoftEtherOptions()
    sb.release(options, say=lambda _: None)
    local = cache / sb.build_key(options) / "root/usr/local"
    if damage == "zeroed":
        with (local / "lib/libcedar.so.5").open("r+b") as f:
            f.write(bytes(65536))
        want = "usr/local/lib/libcedar.so.5: changed"
    elif damage == "deleted":
        (local / "bin/vpncmd").unlink()
        (local / "lib/libcedar.so").unlink()
        want = "usr/local/bin/vpncmd: missing"
    else:
        (local / "lib/libcedar.so").unlink()
        (local / "lib/libcedar.so").symlink_to("/nonexistent")
        want = "usr/local/lib/libcedar.so: changed"
    with pytest.raises(LabError) as err:
        sb.cached(options)
    assert want in str(err.value) and len(str(err.value).splitlines()) == 1, err.value
    said: list[str] = []
    again = sb.release(options, say=said.append)
    assert len(builds) == 2 and again.root == local.parents[1]
    assert any(want in line and "rebuilding" in line for line in said), said
    assert sb.cached(options) == again  # the rebuilt one checks out


def test_release_in_a_cache_it_cannot_write_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "file").write_text("")
    monkeypatch.setenv(sb.CACHE_ENV, str(tmp_path / "file" / "cache"))  # not a directory
    with pytest.raises(LabError, match=r"file/cache: cannot build there .*; set HYBRID_SOFTETHER_CACHE"):
        sb.release(SoftEtherOptions(), say=lambda _: None)
