"""lab/browser.py without a lab: the flags that keep Chromium to the page, what it reports."""

from __future__ import annotations

from pathlib import Path

from lab import browser

LAB = Path("/run/hc-x/dev")
URL = "http://192.168.30.20/"


def test_browser_flags_switch_background_networking_off_and_keep_files_in_the_lab() -> None:
    f = browser.flags(URL, LAB / "browser")
    for off in (
        "--headless=new",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-default-apps",
        "--disable-extensions",
        "--metrics-recording-only",
        "--disable-domain-reliability",
    ):
        assert off in f
    assert f"--user-data-dir={LAB / 'browser' / 'profile'}" in f
    assert f"--screenshot={LAB / 'browser' / browser.SCREENSHOT}" in f
    # No name is resolved: only the page's own address is exempt from the "not found" rule.
    assert "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 192.168.30.20" in f
    assert f[-1] == URL and not any("remote-extensions" in x or "load-extension" in x for x in f)


def test_browser_title_and_why_no_page() -> None:
    dom = "<html><head><title>WordPress &rsaquo;\n Installation</title></head><body>x</body></html>"
    r = browser.Rendered(URL, dom, None, 1.0)
    assert r.title == "WordPress \u203a Installation"
    assert browser.Rendered(URL, "<html><head></head><body></body></html>", None, 1.0).title == ""
    err = (
        "[1:2:1204/021129.58:ERROR:dbus/bus.cc:405] Failed to connect to the bus\n"
        "[1:1:1204/021320.32:ERROR:components/headless/command_handler/headless_command_handler"
        ".cc:409] Page load timed out.\n"
    )
    assert browser._why(err, 0) == "Page load timed out."
    assert browser._why('Cannot open network namespace "hc-x": No such file\n', 255) == (
        'chromium exited 255: Cannot open network namespace "hc-x": No such file'
    )
