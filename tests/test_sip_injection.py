"""The SIP request builder refuses CR, LF and NUL in any part of a request: a value from a PBX file or a server
can never end a header and start another (header injection), nor cut a request short."""

from __future__ import annotations

import pytest

from migrate.voip.sip.message import build_request

GOOD = [("Via", "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1"), ("From", "<sip:2001@voice.gov.bz>;tag=1"),
        ("To", "<sip:2001@voice.gov.bz>"), ("Call-ID", "abc"), ("CSeq", "1 REGISTER")]


def test_a_request_of_clean_parts_is_built_line_by_line():
    request = build_request("REGISTER", "sip:voice.gov.bz", GOOD, cseq=1, branch="z9hG4bK1")
    assert request.text.startswith("REGISTER sip:voice.gov.bz SIP/2.0\r\nVia: ")
    assert request.text.endswith("Content-Length: 0\r\n\r\n") and request.text.count("\r\n") == len(GOOD) + 3


@pytest.mark.parametrize("bad", ["\r\nX-Injected: yes", "\nX-Injected: yes", "\rX", "x\x00y"])
@pytest.mark.parametrize("where", ["value", "name"])
def test_cr_lf_or_nul_in_a_header_refuses_the_whole_request(bad, where):
    header = ("User-Agent", f"govmigrate{bad}") if where == "value" else (f"X-Name{bad}", "1")
    with pytest.raises(ValueError, match="CR, LF or NUL"):
        build_request("OPTIONS", "sip:voice.gov.bz", [*GOOD, header], cseq=2, branch="z9hG4bK2")


def test_cr_lf_or_nul_in_the_method_refuses_the_request():
    with pytest.raises(ValueError, match="CR, LF or NUL"):
        build_request("OPTIONS\r\nX-Injected: yes", "sip:voice.gov.bz", GOOD, cseq=3, branch="z9hG4bK3")
