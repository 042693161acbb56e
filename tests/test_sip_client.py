"""The hand-written SIP client (migrate.voip.sip) against the lab's real Kamailio: OPTIONS and REGISTER over
UDP, TCP and TLS, MD5 and SHA-256 digest, wrong and missing secrets, a silent transport, certificates for the
wrong name or expired, 503 with Retry-After. Small fake servers on 127.0.0.1 say what Kamailio never would:
garbage, oversized responses, stray answers, stale nonces, unusable challenges. Digest is checked against the
RFCs' published examples, RFC 5922 name matching against certificates made here."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import logging
import socket
import threading
import time
import types
from collections.abc import Callable
from pathlib import Path

import pytest
import sipmessage
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from migrate.core.secrets import Secret
from migrate.voip.export import write_kamailio
from migrate.voip.model import Extension
from migrate.voip.sip import (
    SipClient,
    SipConnectFailed,
    SipProtocolError,
    SipTimeout,
    SipTlsFailed,
    Target,
    Timers,
    mask_authorization,
)
from migrate.voip.sip import client as client_module
from migrate.voip.sip import digest as digest_module
from migrate.voip.sip.digest import Challenge, DigestRefused, DigestSession, choose_challenge, digest_response
from migrate.voip.sip.message import message_length, parse_response
from migrate.voip.sip.transport import certificate_info
from tests.lab.kamailio import KamailioConfig, KamailioServer, start_kamailio

PASSWORD = "Correct-Horse-Battery-2001"
OTHER_PASSWORD = "second-phone-secret-2002"
TRACE = "migrate.voip.sip.trace"
FAST = Timers(t1=0.05, t2=0.2, timer_f=0.5, connect=2.0)


def provision(server: KamailioServer, directory: Path, algorithm: str = "MD5") -> KamailioServer:
    """Subscribers 2001 and 2002 as govmigrate's own export writes them, loaded into ``server``."""
    extensions = [Extension("health", "health", "2001", "Jane Doe", tech="pjsip",
                            secret=Secret(PASSWORD, "pbx", remember=False)),
                  Extension("health", "health", "2002", "José Pérez", tech="pjsip",
                            secret=Secret(OTHER_PASSWORD, "pbx", remember=False))]
    written = write_kamailio(extensions, directory, domain=server.domain, algorithm=algorithm)
    server.load(written.files[0].parent)
    return server


@pytest.fixture(scope="module")
def registrar(tmp_path_factory):
    server = start_kamailio(KamailioConfig(name="sip-client"))
    try:
        yield provision(server, tmp_path_factory.mktemp("md5"))
    finally:
        server.cleanup()


@pytest.fixture(scope="module")
def sha_registrar(tmp_path_factory):
    server = start_kamailio(KamailioConfig(name="sip-client-sha", algorithm="SHA-256", tls=False))
    try:
        yield provision(server, tmp_path_factory.mktemp("sha"), algorithm="SHA-256")
    finally:
        server.cleanup()


def client(server: KamailioServer, transport: str, *, address: str | None = None, host: str | None = None,
           **options) -> SipClient:
    ip, port = server.endpoints()[transport]
    target = Target(transport, host or f"sip.{server.domain}", address or ip, port)
    options.setdefault("ca_file", server.ca_file)
    return SipClient(target, domain=server.domain, **options)


# -- OPTIONS and REGISTER against Kamailio ----------------------------------------------------------------

@pytest.mark.lab
@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
def test_options_is_answered_200_over_each_transport(registrar, transport):
    with client(registrar, transport) as sip:
        exchange = sip.options()
        assert exchange.response.status == 200 and exchange.response.reason == "OK"
        assert exchange.rtt > 0 and exchange.retransmissions == 0 and exchange.attempts == 1
        assert (exchange.response.header("server") or "").endswith(registrar.instance)
        if transport == "tls":
            info = sip.tls_info
            assert info is not None and info.verified and info.chain_ok and info.name_ok
            assert info.error is None
            assert registrar.domain in info.names and info.days_left is not None and info.days_left > 0
            assert info.version in ("TLSv1.2", "TLSv1.3")
        else:
            assert sip.tls_info is None


@pytest.mark.lab
@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
def test_register_answers_the_md5_challenge_and_unregister_removes_the_binding(registrar, transport):
    with client(registrar, transport) as sip:
        result = sip.register("2001", Secret(PASSWORD, "pbx", remember=False))
        assert [r.status for r in result.replies] == [401, 200], result.error
        assert result.status == 200 and result.error is None and result.algorithm == "MD5"
        assert result.contact in registrar.contacts("2001")
        assert result.contact in result.contacts and result.expires == 60
        assert result.rtt > 0
        assert sip.unregister(result) is True and result.unregistered is True
    assert registrar.contacts("2001") == []


@pytest.mark.lab
def test_a_sha256_registrar_is_answered_with_sha256(sha_registrar):
    with client(sha_registrar, "udp") as sip:
        result = sip.register("2001", PASSWORD)
        assert [r.status for r in result.replies] == [401, 200], result.error
        assert result.algorithm == "SHA-256"
        assert 'algorithm=SHA-256' in (result.replies[0].header("WWW-Authenticate") or "")
        assert result.contact in sha_registrar.contacts("2001")
        assert sip.unregister(result)


@pytest.mark.lab
def test_a_wrong_password_gets_403_after_the_challenge(registrar):
    with client(registrar, "udp") as sip:
        result = sip.register("2001", Secret(OTHER_PASSWORD, "pbx", remember=False))
    assert [r.status for r in result.replies] == [401, 403]
    assert result.status == 403 and "403" in result.error and "wrong password" in result.error
    assert registrar.contacts("2001") == []


@pytest.mark.lab
def test_an_unknown_extension_gets_403(registrar):
    with client(registrar, "tcp") as sip:
        result = sip.register("2999", PASSWORD)
    assert [r.status for r in result.replies] == [401, 403] and "403" in result.error


@pytest.mark.lab
def test_without_a_secret_no_credentials_are_sent(registrar, caplog):
    caplog.set_level(logging.DEBUG, logger=TRACE)
    with client(registrar, "udp") as sip:
        result = sip.register("2001", None)
        assert sip.unregister(result) is False
    assert [r.status for r in result.replies] == [401]
    assert "no usable secret" in result.error and "no usable secret" in result.unregister_error
    assert "REGISTER sip:" in caplog.text and "Authorization" not in caplog.text


@pytest.mark.lab
def test_a_silent_udp_times_out_after_retransmissions_while_tcp_answers(registrar):
    registrar.drop("udp")
    try:
        with client(registrar, "udp", timers=FAST) as sip:
            with pytest.raises(SipTimeout) as timeout:
                sip.options()
            result = sip.register("2001", PASSWORD)
        assert timeout.value.retransmissions >= 2
        assert f"no answer over udp from udp:sip.{registrar.domain}:5060" in str(timeout.value)
        assert "within 0.5 s" in str(timeout.value)
        assert result.status is None and result.replies == [] and isinstance(result.failure, SipTimeout)
        assert "no answer over udp" in result.error
        with client(registrar, "tcp", timers=FAST) as sip:
            assert sip.options().response.status == 200
    finally:
        registrar.drop()


@pytest.mark.lab
def test_a_certificate_for_another_name_is_refused_with_what_it_names(registrar, caplog):
    caplog.set_level(logging.DEBUG, logger=TRACE)
    sip = client(registrar, "tls", address=registrar.wrong_name_address)
    with sip, pytest.raises(SipTlsFailed) as failed:
        sip.options()
    info = failed.value.info
    assert info.chain_ok is True and info.name_ok is False and info.verified is False
    assert info.names == ["wrong.example.net"]
    assert info.error == f"issued for wrong.example.net, not {registrar.domain}"
    assert sip.tls_info is info and "wrong.example.net" in str(failed.value)
    assert "sent to" not in caplog.text  # nothing goes out on a connection that failed verification


@pytest.mark.lab
def test_an_expired_certificate_is_refused_with_its_expiry(registrar, caplog):
    caplog.set_level(logging.DEBUG, logger=TRACE)
    with client(registrar, "tls", address=registrar.expired_address) as sip:
        result = sip.register("2001", PASSWORD)  # register reports a failure in its result
    assert isinstance(result.failure, SipTlsFailed) and result.status is None and "expired" in result.error
    info = result.failure.info
    assert sip.tls_info is info and info.chain_ok is False and info.verified is False
    assert "expired" in info.error and info.days_left is not None and info.days_left < 0
    assert registrar.domain in info.names and info.name_ok is True and info.not_after is not None
    assert "sent to" not in caplog.text


@pytest.mark.lab
def test_an_unknown_ca_is_refused_and_verify_false_connects_anyway(registrar):
    sip = client(registrar, "tls", ca_file=None)  # the system CAs do not know the lab CA
    with sip, pytest.raises(SipTlsFailed) as failed:
        sip.options()
    assert failed.value.info.chain_ok is False and "issuer" in failed.value.info.error
    assert registrar.domain in failed.value.info.names
    with client(registrar, "tls", address=registrar.wrong_name_address, verify=False) as sip:
        assert sip.options().response.status == 200
        assert sip.tls_info.verified is False and sip.tls_info.name_ok is False


@pytest.fixture
def sleeps(monkeypatch) -> list[float]:
    """The client's waits for Retry-After, recorded instead of slept."""
    waited: list[float] = []
    fake_time = types.SimpleNamespace(monotonic=time.monotonic, sleep=waited.append)
    monkeypatch.setattr(client_module, "time", fake_time)
    return waited


@pytest.mark.lab
def test_a_503_with_a_short_retry_after_is_tried_once_more(registrar, sleeps):
    registrar.busy(1)
    try:
        with client(registrar, "udp") as sip:
            exchange = sip.options()
            result = sip.register("2001", PASSWORD)
    finally:
        registrar.busy(None)
    assert exchange.response.status == 503 and exchange.attempts == 2 and exchange.waited == 1.0
    assert exchange.response.header("Retry-After") == "1"
    assert [r.status for r in result.replies] == [503, 503] and "busy" in result.error
    assert sleeps == [1.0, 1.0]


@pytest.mark.lab
def test_a_retry_after_over_the_limit_is_not_waited_for(registrar, sleeps):
    registrar.busy(120)
    try:
        with client(registrar, "tcp", retry_after_limit=2) as sip:
            exchange = sip.options()
            result = sip.register("2001", PASSWORD)
    finally:
        registrar.busy(None)
    assert exchange.response.status == 503 and exchange.attempts == 1 and exchange.waited == 0
    assert exchange.note == "busy: Retry-After 120 s exceeds the limit of 2 s"
    assert [r.status for r in result.replies] == [503] and result.error == exchange.note
    assert sleeps == []


@pytest.mark.lab
def test_the_trace_shows_every_message_with_the_credentials_masked(registrar, caplog, monkeypatch):
    hashes: list[str] = []

    def recording(*args, **kwargs) -> str:
        hashes.append(real(*args, **kwargs))
        return hashes[-1]

    real = digest_module.digest_response
    monkeypatch.setattr(digest_module, "digest_response", recording)
    caplog.set_level(logging.DEBUG, logger=TRACE)
    with client(registrar, "tcp") as sip:
        result = sip.register("2001", Secret(PASSWORD, "pbx", remember=False))
        assert sip.unregister(result)
    assert result.status == 200 and len(hashes) == 2
    records = [r for r in caplog.records if r.name == TRACE]
    assert [r.getMessage().split(" ", 1)[0] for r in records] == ["sent", "received"] * 4
    assert "Authorization: Digest" in caplog.text and 'response="***"' in caplog.text
    assert 'cnonce="***"' in caplog.text
    ha1 = hashlib.md5(f"2001:{registrar.domain}:{PASSWORD}".encode()).hexdigest()
    for secret in (PASSWORD, ha1, *hashes):
        assert secret not in caplog.text
        assert secret not in repr(result)


# -- fake servers: what Kamailio would never say ------------------------------------------------------------

Responder = Callable[[int, sipmessage.Request], list[bytes]]


def reply(request: sipmessage.Request, status: str = "200 OK", *headers: str, branch: str | None = None,
          body: bytes = b"") -> bytes:
    """A response to ``request`` echoing its Via (or one with another branch), Call-ID and CSeq."""
    via = request.headers["Via"]
    if branch is not None:
        via = via.split(";branch=")[0] + f";branch={branch}"
    lines = [f"SIP/2.0 {status}", f"Via: {via}", f"From: {request.headers['From']}",
             f"To: {request.headers['To']};tag=fake", f"Call-ID: {request.headers['Call-ID']}",
             f"CSeq: {request.headers['CSeq']}", *headers, f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class FakeUdp:
    """A UDP 'server' on 127.0.0.1: ``respond(n, request)`` gives the datagrams to answer the n-th request
    (from 1) with; it keeps every request and when it came."""

    def __init__(self, respond: Responder) -> None:
        self.respond = respond
        self.requests: list[sipmessage.Request] = []
        self.times: list[float] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                data, peer = self.sock.recvfrom(65535)
            except OSError:
                return
            self.times.append(time.monotonic())
            request = sipmessage.Message.parse(data)
            self.requests.append(request)
            for datagram in self.respond(len(self.requests), request):
                self.sock.sendto(datagram, peer)

    def client(self, **options) -> SipClient:
        options.setdefault("timers", Timers(t1=0.05, t2=0.2, timer_f=3.0))
        target = Target("udp", "fake.example", "127.0.0.1", self.port)
        return SipClient(target, domain="fake.example", **options)

    def close(self) -> None:
        self.sock.close()


class FakeTcp:
    """A TCP 'server' on 127.0.0.1 with one connection at a time; ``respond`` as for :class:`FakeUdp` gives
    the bytes to send for each request (none: close the connection)."""

    def __init__(self, respond: Responder) -> None:
        self.respond = respond
        self.requests: list[sipmessage.Request] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn, contextlib.suppress(OSError):  # the client may hang up on what it is sent
                self._converse(conn)

    def _converse(self, conn: socket.socket) -> None:
        buffer = b""
        while chunk := conn.recv(65536):
            buffer += chunk
            while b"\r\n\r\n" in buffer:
                data, buffer = buffer.split(b"\r\n\r\n", 1)
                self.requests.append(sipmessage.Message.parse(data + b"\r\n\r\n"))
                answer = self.respond(len(self.requests), self.requests[-1])
                if not answer:
                    return
                conn.sendall(b"".join(answer))

    def client(self, **options) -> SipClient:
        return SipClient(Target("tcp", "fake.example", "127.0.0.1", self.port), domain="fake.example",
                         timers=Timers(timer_f=3.0), **options)

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def fake_udp():
    made: list[FakeUdp] = []

    def start(respond: Responder) -> FakeUdp:
        made.append(FakeUdp(respond))
        return made[-1]

    yield start
    for server in made:
        server.close()


@pytest.fixture
def fake_tcp():
    made: list[FakeTcp] = []

    def start(respond: Responder) -> FakeTcp:
        made.append(FakeTcp(respond))
        return made[-1]

    yield start
    for server in made:
        server.close()


def echoing(status_line: str, *headers: str) -> Callable[[sipmessage.Request], bytes]:
    """A response with the request's own Via and CSeq, so only what is given here is wrong."""
    def make(request: sipmessage.Request) -> bytes:
        return "\r\n".join([status_line, f"Via: {request.headers['Via']}", f"CSeq: {request.headers['CSeq']}",
                            *headers, "Content-Length: 0", "", ""]).encode()
    return make


GARBAGE = {
    "http": (lambda r: b"HTTP/1.1 200 OK\r\n\r\n", "not a SIP status line: 'HTTP/1.1 200 OK'"),
    "no code": (lambda r: b"SIP/2.0 abc\r\n\r\n", "not a SIP status line: 'SIP/2.0 abc'"),
    "code out of range": (echoing("SIP/2.0 999 Weird"), "not a SIP status line: 'SIP/2.0 999 Weird'"),
    "signed code": (echoing("SIP/2.0 +20 OK"), "not a SIP status line"),
    "no headers end": (lambda r: b"SIP/2.0 200 OK\r\nCSeq: 1 OPTIONS\r\n", "incomplete response"),
    "no cseq": (lambda r: b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n", "response without a CSeq header"),
    "bad cseq": (lambda r: f"SIP/2.0 200 OK\r\nVia: {r.headers['Via']}\r\nCSeq: one\r\n\r\n".encode(),
                 "invalid CSeq: 'one'"),
    "no via": (lambda r: f"SIP/2.0 200 OK\r\nCSeq: {r.headers['CSeq']}\r\n\r\n".encode(),
               "response without a Via header"),
    "bad via": (lambda r: f"SIP/2.0 200 OK\r\nVia: nonsense\r\nCSeq: {r.headers['CSeq']}\r\n\r\n".encode(),
                "invalid Via: 'nonsense'"),
    "a request": (lambda r: b"OPTIONS sip:client SIP/2.0\r\nCSeq: 1 OPTIONS\r\n\r\n",
                  "a request where a response was expected: 'OPTIONS sip:client SIP/2.0'"),
    "control characters": (echoing("SIP/2.0 200 OK", "X-Evil: \x1b[2J\x07"), r"'X-Evil: \x1b[2J\x07'"),
    "reason with NUL": (lambda r: b"SIP/2.0 200 O\x00K\r\n\r\n", r"'SIP/2.0 200 O\x00K'"),
    "no colon": (echoing("SIP/2.0 200 OK", "this is not a header"), "malformed header line: 'this is not"),
    "not utf-8": (lambda r: b"SIP/2.0 200 \xff\xfe\r\n\r\n", "not UTF-8"),
    "long line": (lambda r: b"SIP/2.0 " + b"A" * 5000 + b"\r\n\r\n", "'SIP/2.0 " + "A" * 72 + "'"),
}


@pytest.mark.parametrize("case", GARBAGE)
def test_a_malformed_response_is_a_protocol_error_quoting_the_line(fake_udp, case):
    make, expected = GARBAGE[case]
    server = fake_udp(lambda n, request: [make(request)])
    with server.client() as sip, pytest.raises(SipProtocolError) as failed:
        sip.options()
    message = str(failed.value)
    assert expected in message
    assert len(message) < 160 and not any(ord(c) < 32 for c in message)


def test_a_response_over_64_kib_is_a_protocol_error(fake_tcp):
    body = b"x" * 70 * 1024
    server = fake_tcp(lambda n, request: [reply(request, "200 OK", body=body)])
    with server.client() as sip, pytest.raises(SipProtocolError) as failed:
        sip.options()
    assert "larger than the limit of 64 KiB" in str(failed.value)
    endless = fake_tcp(lambda n, request: [b"SIP/2.0 200 OK\r\n" + b"X-Filler: yyyyyyyyyy\r\n" * 7000])
    with endless.client() as sip, pytest.raises(SipProtocolError) as failed:
        sip.options()
    assert "no end of the headers within 64 KiB" in str(failed.value)


def test_a_stream_is_framed_by_content_length_and_keeps_one_connection(fake_tcp):
    server = fake_tcp(lambda n, request: [reply(request, "200 OK", "Content-Type: text/plain",
                                                body=b"SIP/2.0 500 In The Body\r\n\r\n"), b"\r\n\r\n"])
    with server.client() as sip:
        first, second = sip.options(), sip.options()
    assert first.response.status == second.response.status == 200
    assert [r.headers["CSeq"] for r in server.requests] == ["1 OPTIONS", "1 OPTIONS"]
    sent_by = {r.headers["Via"].split(" ")[1].split(";")[0] for r in server.requests}
    assert len(sent_by) == 1  # the same connection, the same local port


def test_a_connection_closed_before_the_answer_and_a_refused_one_are_connect_failures(fake_tcp):
    server = fake_tcp(lambda n, request: [])
    with server.client() as sip, pytest.raises(SipConnectFailed) as failed:
        sip.options()
    assert "closed the connection before a final response" in str(failed.value)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for transport in ("tcp", "udp"):
        sip = SipClient(Target(transport, "nothing.example", "127.0.0.1", port), domain="nothing.example",
                        timers=FAST)
        with sip, pytest.raises(SipConnectFailed) as failed:
            sip.options()
        assert "connection refused" in str(failed.value)


def test_udp_retransmits_on_timer_e_doubling_up_to_t2_and_ignores_strays(fake_udp):
    def respond(n: int, request: sipmessage.Request) -> list[bytes]:
        if n < 5:
            return []
        return [reply(request, "200 Not Mine", branch="z9hG4bKsomeoneelse"),
                reply(request, "200 Late").replace(b"CSeq: 1 OPTIONS", b"CSeq: 0 OPTIONS"),
                reply(request, "200 Mine")]

    server = fake_udp(respond)
    with server.client(timers=Timers(t1=0.05, t2=0.2, timer_f=3.0)) as sip:
        exchange = sip.options()
    assert exchange.response.reason == "Mine" and exchange.retransmissions == 4
    gaps = [b - a for a, b in zip(server.times, server.times[1:], strict=False)]
    for gap, timer_e in zip(gaps, [0.05, 0.1, 0.2, 0.2], strict=True):
        assert gap >= timer_e * 0.9  # never sooner than Timer E says (later is the scheduler's doing)
    assert {r.headers["Via"] for r in server.requests} == {server.requests[0].headers["Via"]}


def test_after_a_provisional_response_udp_retransmits_at_t2(fake_udp):
    def respond(n: int, request: sipmessage.Request) -> list[bytes]:
        return [reply(request, "100 Trying")] if n == 1 else [] if n == 2 else [reply(request)]

    server = fake_udp(respond)
    with server.client(timers=Timers(t1=0.05, t2=0.4, timer_f=3.0)) as sip:
        exchange = sip.options()
    assert exchange.response.status == 200 and exchange.retransmissions == 2
    assert server.times[2] - server.times[1] >= 0.4 * 0.9  # T2, not 2*T1


def register_fake(fake_udp, challenges: dict[int, list[str]]):
    """A registrar that answers request n with 401 and the given WWW-Authenticate values, else 200."""
    def respond(n: int, request: sipmessage.Request) -> list[bytes]:
        if n in challenges:
            return [reply(request, "401 Unauthorized", *(f"WWW-Authenticate: {c}" for c in challenges[n]))]
        return [reply(request, "200 OK", f"Contact: {request.headers['Contact']};expires=30")]
    return fake_udp(respond)


def test_a_stale_nonce_is_answered_once_more_with_the_new_nonce(fake_udp):
    server = register_fake(fake_udp, {
        1: ['Digest realm="fake.example", nonce="first", qop="auth"'],
        2: ['Digest realm="fake.example", nonce="second", qop="auth", stale=true'],
    })
    with server.client() as sip:
        result = sip.register("2001", PASSWORD)
    assert [r.status for r in result.replies] == [401, 401, 200] and result.error is None
    assert result.expires == 30
    third = server.requests[2].headers["Authorization"]
    assert 'nonce="second"' in third and "nc=00000001" in third
    assert [r.headers["CSeq"] for r in server.requests] == ["1 REGISTER", "2 REGISTER", "3 REGISTER"]
    assert len({r.headers["Call-ID"] for r in server.requests}) == 1
    assert len({r.headers["Via"] for r in server.requests}) == 3  # a new branch for each transaction


def test_a_second_challenge_that_is_not_stale_means_a_wrong_password(fake_udp):
    challenge = 'Digest realm="fake.example", nonce="n1", qop="auth"'
    server = register_fake(fake_udp, {1: [challenge], 2: [challenge], 3: [challenge]})
    with server.client() as sip:
        result = sip.register("2001", PASSWORD)
    assert [r.status for r in result.replies] == [401, 401]
    assert result.error == "401 Unauthorized again after credentials: the password is wrong"


def test_sha256_is_chosen_when_offered_beside_md5(fake_udp):
    server = register_fake(fake_udp, {1: [
        'Digest realm="fake.example", nonce="m", qop="auth", algorithm=MD5',
        'Digest realm="fake.example", nonce="s", qop="auth", algorithm=SHA-256',
    ]})
    with server.client() as sip:
        result = sip.register("2001", PASSWORD, auth_user="jane")
    assert result.status == 200 and result.algorithm == "SHA-256"
    authorization = server.requests[1].headers["Authorization"]
    assert 'username="jane"' in authorization and "algorithm=SHA-256" in authorization
    assert 'nonce="s"' in authorization and "qop=auth," in authorization


@pytest.mark.parametrize("challenge, reason", [
    ('Digest realm="fake.example", nonce="n", qop="auth-int"', "qop 'auth-int' does not offer auth"),
    ('Digest realm="fake.example", nonce="n", qop="auth", algorithm=SHA-512-256',
     "algorithm 'SHA-512-256' is not supported"),
    ('Basic realm="fake.example"', "scheme 'Basic' is not Digest"),
])
def test_an_unusable_challenge_ends_the_registration_in_its_result(fake_udp, challenge, reason):
    server = register_fake(fake_udp, {1: [challenge]})
    with server.client() as sip:
        result = sip.register("2001", PASSWORD)
    assert [r.status for r in result.replies] == [401]
    assert result.error == f"no usable challenge: {reason}"
    assert len(server.requests) == 1


# -- units: digest, masking, parsing ------------------------------------------------------------------------

def test_digest_matches_the_rfc_2617_example():
    challenge = Challenge("testrealm@host.com", "dcd98b7102dd2f0e8b11d0f600bfb0c093",
                          qop=("auth", "auth-int"), opaque="5ccc069c403ebaf9f0171e9517f40e41")
    password = Secret("Circle Of Life", remember=False)
    response = digest_response(challenge, username="Mufasa", password=password, method="GET",
                               uri="/dir/index.html", nc="00000001", cnonce="0a4f113b")
    assert response == "6629fae49393a05397450978507c4ef1"


@pytest.mark.parametrize("algorithm, expected", [
    ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
    ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
])
def test_digest_matches_the_rfc_7616_examples(algorithm, expected):
    challenge = Challenge("http-auth@example.org", "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", algorithm,
                          ("auth", "auth-int"), "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS")
    password = Secret("Circle of Life", remember=False)  # RFC 7616 writes "of" in lower case
    response = digest_response(challenge, username="Mufasa", password=password, method="GET",
                               uri="/dir/index.html", nc="00000001",
                               cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ")
    assert response == expected


def test_a_challenge_with_a_quoted_qop_list_is_parsed_and_answered_with_a_token_qop():
    challenge = choose_challenge(['Digest realm="r", nonce="n\\"1", qop="auth,auth-int", opaque="o", '
                                  'algorithm=MD5-sess'])
    assert challenge.qop == ("auth", "auth-int") and challenge.nonce == 'n"1'
    assert challenge.algorithm == "MD5-sess"
    session = DigestSession('ja"ne', Secret("a-password", remember=False))
    first = session.authorization(challenge, "REGISTER", "sip:r")
    second = session.authorization(challenge, "REGISTER", "sip:r")
    assert 'username="ja\\"ne"' in first and 'nonce="n\\"1"' in first and 'opaque="o"' in first
    assert "algorithm=MD5-sess" in first and "qop=auth, nc=00000001" in first
    assert "nc=00000002" in second
    fresh = Challenge("r", "another", qop=("auth",))
    assert "nc=00000001" in session.authorization(fresh, "REGISTER", "sip:r")
    assert "a-password" not in repr(session)


def test_challenges_without_realm_or_with_rubbish_are_refused():
    with pytest.raises(DigestRefused, match="without realm or nonce"):
        choose_challenge(['Digest nonce="n"'])
    with pytest.raises(DigestRefused, match="cannot parse"):
        choose_challenge(['Digest realm="r", nonce'])
    with pytest.raises(DigestRefused, match="no challenge"):
        choose_challenge([])


def test_mask_authorization_hides_response_and_cnonce_only():
    text = ('REGISTER sip:voice.gov.bz SIP/2.0\r\n'
            'Authorization: Digest username="2001", response="0123abcd", cnonce="c0ffee", nc=00000001\r\n'
            'proxy-authorization : Digest username="2001", RESPONSE=feedbeef, cnonce="x"\r\n'
            'X-Note: response="visible"\r\n\r\n')
    masked = mask_authorization(text)
    assert "0123abcd" not in masked and "c0ffee" not in masked and "feedbeef" not in masked
    assert 'Authorization: Digest username="2001", response="***", cnonce="***", nc=00000001\r\n' in masked
    assert 'RESPONSE="***"' in masked and 'X-Note: response="visible"' in masked


def test_responses_are_parsed_with_compact_forms_folding_and_a_body():
    data = (b"SIP/2.0 200 OK\r\nv: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKabc\r\ni: call-1\r\n"
            b"CSeq: 7\r\n  REGISTER\r\nm: <sip:a@b>;expires=30\r\nm: <sip:c@d>\r\nl: 4\r\n\r\nbody")
    response = parse_response(data)
    assert (response.status, response.reason, response.cseq, response.method) == (200, "OK", 7, "REGISTER")
    assert response.branch == "z9hG4bKabc"
    assert response.header("call-id") == response.header("i") == "call-1"
    assert response.headers("Contact") == ["<sip:a@b>;expires=30", "<sip:c@d>"]
    assert message_length(data + b"SIP/2.0") == len(data) and message_length(data[:-1]) is None


def certificate(*names: x509.GeneralName, days: int = 90) -> bytes:
    """A self-signed certificate (DER) for ``names``, valid ``days`` from now (negative: expired)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "voice.gov.bz")])
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(days=400))
               .not_valid_after(now + dt.timedelta(days=days, hours=1)))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(names)), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


@pytest.mark.parametrize("names, ok", [
    ([x509.DNSName("VOICE.gov.bz")], True),
    ([x509.UniformResourceIdentifier("sip:voice.gov.bz")], True),
    ([x509.UniformResourceIdentifier("sips:voice.gov.bz")], True),
    ([x509.DNSName("*.gov.bz")], False),
    ([x509.DNSName("sip.voice.gov.bz"), x509.DNSName("evilvoice.gov.bz")], False),
    ([x509.UniformResourceIdentifier("sip:user@voice.gov.bz")], False),
    ([], False),  # no subjectAltName: the common name is not looked at (RFC 5922 §7.1)
])
def test_the_certificate_name_is_the_sip_domain_as_rfc_5922_says(names, ok):
    info = certificate_info(certificate(*names), "voice.gov.bz", chain_ok=True, version="TLSv1.3")
    assert info.name_ok is ok and info.verified is ok and info.names == [n.value for n in names]
    assert (info.error is None) is ok
    if not ok:
        assert info.error.startswith("issued for ") and info.error.endswith(", not voice.gov.bz")


def test_the_days_left_of_a_certificate_are_negative_once_it_expired():
    assert certificate_info(certificate(x509.DNSName("voice.gov.bz")), "voice.gov.bz", chain_ok=True,
                            version=None).days_left == 90
    expired = certificate_info(certificate(x509.DNSName("voice.gov.bz"), days=-35), "voice.gov.bz",
                               chain_ok=False, version=None)
    assert expired.days_left == -35 and expired.not_after < dt.datetime.now(dt.UTC)
    assert certificate_info(b"not a certificate", "voice.gov.bz", chain_ok=False, version=None).names == []
