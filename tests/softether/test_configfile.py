"""The password hashes both ends of a cascade keep in their configuration files, and the
status line they make when they disagree (a cascade that fails at its next reconnect)."""

from __future__ import annotations

from softether import configfile
from softether.health import NodeReport, agree

SERVER = """# Software Configuration File
declare root
{
	declare VirtualHUB
	{
		declare HYBRID
		{
			declare SecurityAccountDatabase
			{
				declare UserList
				{
					declare hybrid-vpc
					{
						byte AuthNtLmSecureHash wqSO1D9lNc1K6BU56sLpYw==
						byte AuthPassword YTDaW0HkBFe3AXV+6CXLM//fCM4=
						uint AuthType 1
						string Note hc-pw:9c66504b597021fb4a7f
					}
				}
			}
		}
	}
}
"""

BRIDGE = """declare root
{
	declare VirtualHUB
	{
		declare BRIDGE
		{
			declare CascadeList
			{
				declare Cascade0
				{
					declare ClientAuth
					{
						uint AuthType 1
						byte HashedPassword {hash}
						string Username hybrid-vpc
					}
					declare ClientOption
					{
						string AccountName HYBRID
						string Hubname HYBRID
					}
				}
			}
		}
	}
}
"""
SAME = "YTDaW0HkBFe3AXV+6CXLM//fCM4="


def test_configfile_reads_the_users_and_the_cascades_password_hashes() -> None:
    assert configfile.user_hashes(configfile.parse(SERVER), "hybrid") == {"hybrid-vpc": SAME}
    tree = configfile.parse(BRIDGE.replace("{hash}", SAME))
    assert configfile.cascade_hashes(tree, "BRIDGE") == {"hybrid": ("hybrid-vpc", SAME)}
    assert configfile.cascade_hashes(tree, "OTHER") == {}


def test_agree_names_the_cascade_whose_password_differs_from_the_servers_user() -> None:
    server = NodeReport("home", "server", "h", True, stored_users=(("hybrid/hybrid-vpc", SAME),))
    ok = NodeReport("Hybrid-VPC", "bridge", "b", True, stored_cascades=(("HYBRID", "HYBRID/hybrid-vpc", SAME),))
    bad = NodeReport("Hybrid-VPC", "bridge", "b", True, stored_cascades=(("HYBRID", "HYBRID/hybrid-vpc", "other="),))
    assert agree([server, ok])[1].credentials == ()
    (line,) = agree([server, bad])[1].credentials
    assert line.startswith("cascade HYBRID: its password differs from the home server's user HYBRID/hybrid-vpc")
    assert line in agree([server, bad])[1].problems
    # Without the server's file there is nothing to compare with: no claim either way.
    assert agree([bad])[0].credentials == ()


def test_agree_names_the_cascade_that_pins_a_certificate_the_server_no_longer_presents() -> None:
    from softether.facts import CascadeState

    server = NodeReport("home", "server", "h", True, certificate_sha1="A" * 40)
    pinned = NodeReport("Hybrid-VPC", "bridge", "b", True, cascades=(CascadeState("HYBRID", verify_cert=True, cert_sha1="B" * 40),))
    (line,) = agree([server, pinned])[1].credentials
    assert line == (
        "cascade HYBRID: it pins certificate SHA1 BBBBBBBBBBBB, the home server presents AAAAAAAAAAAA:"
        " it fails at its next reconnect (pulumi up pins the server's)"
    )
    same = NodeReport("Hybrid-VPC", "bridge", "b", True, cascades=(CascadeState("HYBRID", verify_cert=True, cert_sha1="A" * 40),))
    assert agree([server, same])[1].credentials == ()
