"""`hybrid diagram`: every site, subnet, CIDR and address of the topology, drawn by Graphviz."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from cli.diagram import to_dot
from cli.main import main
from topology import Stack, load_stack, plan_routes

FOUR_SITE = Path(__file__).parent / "stacks" / "Pulumi.four-site.yaml"
REFERENCE_SVG = Path(__file__).parent.parent / "docs" / "reference-network.svg"
SVG = "{http://www.w3.org/2000/svg}"


def svg_texts(path: Path) -> list[str]:
    """Every text line drawn in an SVG file (fails if it is not well-formed XML)."""
    root = ET.parse(path).getroot()
    assert root.tag == f"{SVG}svg"
    return [t.text or "" for t in root.iter(f"{SVG}text")]


def expected_strings(stack: Stack) -> list[str]:
    """What the picture must show: names, every range, every address a user configures."""
    net = stack.network
    plan = plan_routes(net)
    out = [net.home.name, net.transit.hub, str(net.transit.cidr), *map(str, net.home.cidrs)]
    for site in net.sites:
        out += [site.name, *map(str, site.cidrs), str(site.bridge.private_address)]
        out += [s for sub in site.subnets for s in (sub.name, str(sub.cidr))]
        out.append(str(plan.bridge(site.name).tap_address))
    out += [str(i.address) for i in plan.l3_switch.interfaces]
    return out


def drawn(texts: list[str], wanted: str) -> bool:
    return any(wanted in t for t in texts)


@pytest.mark.parametrize("ref", ["dev", str(FOUR_SITE)])
def test_diagram_svg_shows_every_site_subnet_and_address(ref: str, tmp_path: Path):
    out = tmp_path / "net.svg"
    assert main(["diagram", ref, "-o", str(out)]) == 0
    texts = svg_texts(out)
    missing = [s for s in expected_strings(load_stack(ref)) if not drawn(texts, s)]
    assert missing == []
    assert drawn(texts, "RDS MySQL") and drawn(texts, "App Service")


def test_diagram_draws_one_cascade_per_cloud_site():
    stack = load_stack(str(FOUR_SITE))
    cascades = [line for line in to_dot(stack).splitlines() if "cascade" in line]
    assert len(cascades) == len(stack.network.sites)
    for i, site in enumerate(stack.network.sites):
        assert cascades[i].startswith(f"  hub -> s{i}_bridge [")
        assert f"cascade {site.cascade_user}" in cascades[i]


def test_diagram_png_is_a_png(tmp_path: Path):
    out = tmp_path / "net.png"
    assert main(["diagram", "--stack", "dev", "-o", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_diagram_bad_extension_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    out = tmp_path / "net.pdf"
    assert main(["diagram", "--stack", "dev", "-o", str(out)]) == 2
    assert capsys.readouterr().err == f"-o {out}: the file name must end in .svg or .png\n"
    assert not out.exists()


def test_diagram_without_graphviz_is_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert main(["diagram", "--stack", "dev", "-o", str(tmp_path / "x.svg")]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "dot: not found; install Graphviz (Debian package graphviz, listed in packages.apt)"
    ]


def test_diagram_reference_svg_in_docs_is_current(tmp_path: Path):
    # Compared by the text drawn, not byte for byte: layout differs between Graphviz versions.
    fresh = tmp_path / "ref.svg"
    assert main(["diagram", "--stack", "dev", "-o", str(fresh)]) == 0
    assert sorted(svg_texts(REFERENCE_SVG)) == sorted(svg_texts(fresh))


def test_diagram_shows_the_private_endpoint_or_the_public_door():
    stack = load_stack("dev")
    dot = to_dot(stack)
    assert "private endpoint 192.168.30.254" in dot and "private: public network access off" in dot
    assert "s1_net0 -> app_endpoint" in dot  # in Hybrid_Subnet, beside the bridge
    assert stack.app is not None
    public = stack.model_copy(update={"app": stack.app.model_copy(update={"access": "public"})})
    dot = to_dot(public)
    assert "app_endpoint" not in dot and "public: 203.0.113.0/24 only" in dot
