"""NTLM, as on-premises Exchange authenticates: the lab's responder does a real NTLM handshake, govmigrate's
inventory and sync go through it, a wrong password is a refused login, and a server that does not offer the
method the project file names says so instead of blaming the password."""

from __future__ import annotations

import base64
import http.client
import json
import ssl
from pathlib import Path

import pytest
import spnego
import yaml
from exchangelib.protocol import close_connections

from migrate.core.config import EwsServer
from migrate.core.secrets import Secret
from migrate.mailbox.ews import AuthRefused, EwsSource, offered_schemes
from tests.lab import corpus, scenario
from tests.lab.certs import lab_ca
from tests.lab.ews import EWS_PATH, EwsResponder
from tests.lab.inspect import read_mailbox
from tests.test_inventory import stored, stored_probe
from tests.test_inventory_ews import DOMAIN, PARTIAL, SERVICE, assert_ews_matches_corpus

pytestmark = pytest.mark.lab

PASSWORD = "lab-ews-Ntlm-7q"


@pytest.fixture(scope="module")
def boxes() -> list[corpus.CorpusMailbox]:
    return corpus.ministry(seed="ews-ntlm", domain=DOMAIN, users=2, messages=12, login_style="email")


@pytest.fixture(autouse=True)
def _no_pooled_connections():
    yield
    close_connections()  # exchangelib keeps sessions per endpoint; responders come and go between tests


@pytest.fixture
def lab_of(tmp_path, boxes):
    """``lab_of(auth=..., project_auth=...)``: an Exchange ministry offering ``auth``, its workspace."""
    labs = []

    def make(**kw):
        ws = tmp_path / f"ws{len(labs)}"
        labs.append(scenario.ews_lab(ws, boxes, service_user=SERVICE, service_password=PASSWORD, **kw))
        return labs[-1], ws

    yield make
    for lab in labs:
        lab.stop()


def _post(conn: http.client.HTTPSConnection, authorization: str | None) -> http.client.HTTPResponse:
    headers = {"Content-Type": "text/xml"}
    if authorization:
        headers["Authorization"] = authorization
    conn.request("GET", EWS_PATH, headers=headers)
    response = conn.getresponse()
    response.read()
    return response


def _ntlm_token(header: str) -> bytes:
    scheme, _, token = header.partition(" ")
    assert scheme == "NTLM" and token, header
    return base64.b64decode(token)


@pytest.mark.parametrize("user", [SERVICE, "FINANCE\\svc-migrate"])
def test_ntlm_handshake_authenticates_its_connection_and_no_other(boxes, user):
    with EwsResponder(boxes[:1], service_user=SERVICE, service_password=PASSWORD, auth=("ntlm",),
                      tls=lab_ca().issue("ews-ntlm")) as responder:
        context = ssl.create_default_context(cafile=str(lab_ca().ca_file))
        port = responder.port

        conn = http.client.HTTPSConnection("127.0.0.1", port, context=context)
        first = _post(conn, None)
        assert first.status == 401 and first.getheader("WWW-Authenticate") == "NTLM"
        client = spnego.client(user, PASSWORD, protocol="ntlm", options=spnego.NegotiateOptions.use_ntlm)
        challenge = _post(conn, "NTLM " + base64.b64encode(client.step()).decode())
        assert challenge.status == 401
        answer = client.step(_ntlm_token(challenge.getheader("WWW-Authenticate")))
        assert _post(conn, "NTLM " + base64.b64encode(answer).decode()).status == 200
        assert _post(conn, None).status == 200, "the connection stays authenticated"

        other = http.client.HTTPSConnection("127.0.0.1", port, context=context)
        assert _post(other, None).status == 401, "another connection is not"
        basic = base64.b64encode(f"{SERVICE}:{PASSWORD}".encode()).decode()
        assert _post(other, f"Basic {basic}").status == 401, "Basic is not offered"

        wrong = spnego.client(user, "not-it", protocol="ntlm", options=spnego.NegotiateOptions.use_ntlm)
        challenge = _post(other, "NTLM " + base64.b64encode(wrong.step()).decode())
        answer = wrong.step(_ntlm_token(challenge.getheader("WWW-Authenticate")))
        refused = _post(other, "NTLM " + base64.b64encode(answer).decode())
        assert refused.status == 401 and refused.getheader("WWW-Authenticate") == "NTLM"
        conn.close()
        other.close()


def test_inventory_and_sync_through_ntlm(govmigrate, lab_of, boxes):
    lab, ws = lab_of(auth=("ntlm",))
    responder = lab.extra[0]
    assert yaml.safe_load((ws / "migration.yaml").read_text())["sources"][0]["server"]["auth"] == "ntlm"
    govmigrate("-w", ws, "inventory", "mail")
    assert stored_probe(ws, "finance").ok is True
    measured = stored(ws)
    for box in boxes:
        assert_ews_matches_corpus(measured[box.email], box, responder)
    govmigrate("-w", ws, "sync", "--all")
    for box in boxes:
        got = read_mailbox(lab.central, box.email)
        assert sum(len(f.messages) for f in got.values()) == sum(len(f.messages) for f in box.folders)
    results = json.loads(govmigrate("-w", ws, "verify", "--all", "--json").stdout)
    assert all(r["matches"] for r in results)
    refused = [r for r in responder.request_log if r.status == 401]
    assert refused and all(r.operation == "(unauthenticated)" for r in refused), "every request was NTLM's"


def _secrets_absent(ws, result, *secrets: str) -> None:
    state = b"".join(p.read_bytes() for p in ws.glob("state.db*"))
    for secret in secrets:
        assert secret not in result.stdout + result.stderr and secret.encode() not in state
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("offered", [("ntlm",), ("negotiate", "ntlm")])
def test_wrong_ntlm_password_fails_the_source_as_a_refused_login(govmigrate, lab_of, boxes, offered):
    lab, ws = lab_of(auth=offered)
    wrong = "not-the-Ntlm-password-3"
    (ws / "secrets" / "finance-ews").write_text(wrong + "\n")
    result = govmigrate("-w", ws, "-vvv", "inventory", "mail", expect=PARTIAL)
    probe = stored_probe(ws, "finance")
    assert probe.ok is False and "refused the password of service account" in probe.error
    _secrets_absent(ws, result, wrong, PASSWORD)
    responder = lab.extra[0]
    assert [r for r in responder.request_log if r.status != 401] == [], "nothing got past the handshake"
    handshakes = len(responder.request_log) // 3                 # 401, 401 with a challenge, 401 refused
    assert handshakes <= 2, f"{handshakes} refused NTLM logins: a domain would lock the account out"

    result = govmigrate("-w", ws, "-vvv", "sync", "--all", "--json", expect=PARTIAL)
    rows = {r["mailbox"]: r for r in json.loads(result.stdout)}
    assert set(rows) == {b.email for b in boxes}
    assert all("refused the password of service account" in r["result"] for r in rows.values()), rows
    _secrets_absent(ws, result, wrong, PASSWORD)
    assert not any(f.messages for b in boxes for f in read_mailbox(lab.central, b.email).values())


@pytest.mark.parametrize(("offered", "project", "said"), [
    (("basic",), "ntlm", "the server does not accept NTLM here; it offers Basic: set auth: basic"),
    (("negotiate", "ntlm"), "basic", "the server does not accept Basic here; it offers Negotiate, NTLM: "
                                     "set auth: ntlm"),
    (("negotiate",), "ntlm", "the server does not accept NTLM here; it offers Negotiate (Kerberos), which "
                             "govmigrate does not speak"),
])
def test_an_auth_method_the_server_does_not_offer_is_named_not_blamed_on_the_password(
        govmigrate, lab_of, offered, project, said):
    _lab, ws = lab_of(auth=offered, project_auth=project)
    result = govmigrate("-w", ws, "inventory", "mail", expect=PARTIAL)
    probe = stored_probe(ws, "finance")
    assert probe.ok is False and said in probe.error, probe.error
    assert "password" not in probe.error
    assert "exchangelib" not in result.stderr and "Request XML" not in result.stderr, result.stderr
    _secrets_absent(ws, result, PASSWORD)


# -- what a 401 means, from its WWW-Authenticate alone (no server needed) --------------------------------------

def _described(auth: str, offered: tuple[str, ...]) -> str:
    server = EwsServer(type="ews", url="https://127.0.0.1:9/EWS/Exchange.asmx", auth=auth, user=SERVICE,
                       password="env:EWS_PASSWORD")
    with EwsSource(server, Secret(PASSWORD), base_dir=Path("."), label="source finance") as s:
        return s.describe(AuthRefused("HTTP 401", offered)).message


@pytest.mark.parametrize(("auth", "offered", "said"), [
    ("ntlm", ("Negotiate",), "refused the password"),     # requests_ntlm speaks NTLM inside Negotiate
    ("ntlm", ("Negotiate", "NTLM"), "refused the password"),
    ("ntlm", (), "refused the password"),                 # a 401 that names nothing blames nothing else
    ("basic", ("Basic",), "refused the password"),
    ("basic", ("Negotiate",), "does not accept Basic here; it offers Negotiate, which govmigrate does not speak"),
    ("ntlm", ("Bearer", "Basic"), "does not accept NTLM here; it offers Bearer, Basic: set auth: basic"),
])
def test_a_401_blames_the_password_only_when_the_method_is_offered(auth, offered, said):
    assert said in _described(auth, offered)


def test_only_auth_scheme_tokens_of_a_www_authenticate_header_are_repeated():
    header = ('Basic realm="[bold]x", NTLM TlRMTVNTUAAC==, [link=http://evil]Click, negotiate, [red]Kerberos, '
              '\x1b[2J, <b>Bold</b>, Digest qop="auth"')
    assert offered_schemes({"WWW-Authenticate": header}) == ("Basic", "NTLM", "negotiate", "Digest")
    assert offered_schemes({}) == ()

