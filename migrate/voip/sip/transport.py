"""SIP transports of the client: one non-INVITE client transaction at a time over UDP, TCP or TLS.

UDP follows RFC 3261 §17.1.2: the request is retransmitted when Timer E fires (T1, doubling up to T2; T2
once a provisional response came), and Timer F (64*T1) gives up. TCP and TLS do not retransmit, keep Timer F,
and frame the stream by Content-Length (§18.3). A response belongs to the transaction whose Via branch, CSeq
number and method it carries; any other (a late answer to an earlier request, a stray) is ignored.

TLS verifies the chain against the configured CA file (None: the system's CAs) and then, here, the name per
RFC 5922 §7.2: the SIP domain (not the host it was found under) must be a subjectAltName dNSName (compared
without case, no wildcards) or a ``sip:``/``sips:`` URI. When the chain does not verify, a second connection
without verification reads the certificate only so that the report can say what it was issued for and until
when; nothing is ever sent on it.

Every message sent or received is logged at DEBUG on ``migrate.voip.sip.trace``, credentials masked.
"""

from __future__ import annotations

import logging
import socket
import ssl
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509

from migrate.voip.sip.digest import mask_authorization
from migrate.voip.sip.message import (
    MAX_MESSAGE,
    OutgoingRequest,
    SipError,
    SipResponse,
    message_length,
    parse_response,
    printable,
)

TRANSPORTS = ("udp", "tcp", "tls")
trace_log = logging.getLogger("migrate.voip.sip.trace")


@dataclass(frozen=True)
class Target:
    """Where to send: the transport, the name it was found under (SRV target or domain; messages use it),
    the IP address to connect to and the port."""

    transport: str
    host: str
    address: str
    port: int

    def __post_init__(self) -> None:
        if self.transport not in TRANSPORTS:
            raise ValueError(f"SIP transport {self.transport!r}: use one of {', '.join(TRANSPORTS)}")

    def label(self) -> str:
        """E.g. ``tls:sip.voice.gov.bz:5061 (127.56.7.1)``."""
        where = f"{self.transport}:{hostport(self.host, self.port)}"
        return where if self.host == self.address else f"{where} ({self.address})"


@dataclass(frozen=True)
class Timers:
    """RFC 3261 §17.1.1 timers, in seconds (tests pass small values)."""

    t1: float = 0.5
    t2: float = 4.0
    #: 64*T1 by default.
    timer_f: float = 32.0
    #: TCP connect and TLS handshake.
    connect: float = 5.0


DEFAULT_TIMERS = Timers()


@dataclass
class TlsInfo:
    """What a TLS connection showed: verdicts, why not verified, and what the certificate says."""

    #: The chain verified against the CA and the name matched.
    verified: bool
    chain_ok: bool
    name_ok: bool
    #: Why not verified, in plain words.
    error: str | None
    #: subjectAltName dNSNames and URIs.
    names: list[str]
    #: UTC.
    not_after: datetime | None
    #: Negative when expired.
    days_left: int | None
    #: E.g. "TLSv1.3".
    version: str | None


@dataclass
class Exchange:
    """One request and its final response (the client adds attempts, wait and note for a 503 retried)."""

    response: SipResponse
    #: Seconds from the first send to the final response.
    rtt: float
    #: UDP only.
    retransmissions: int = 0
    #: Transactions made: 2 when a 503 with Retry-After was tried once more.
    attempts: int = 1
    #: Seconds waited for Retry-After before the last attempt.
    waited: float = 0.0
    #: Why a 503 was not (or was) retried, in plain words.
    note: str | None = None


class SipTimeout(SipError):
    """No final response within Timer F."""

    def __init__(self, message: str, *, retransmissions: int = 0) -> None:
        super().__init__(message)
        self.retransmissions = retransmissions


class SipConnectFailed(SipError):
    """Refused, reset, unreachable, or closed before a final response."""


class SipTlsFailed(SipError):
    """The TLS connection failed or was not trusted; ``info`` says what the certificate showed."""

    def __init__(self, message: str, *, info: TlsInfo) -> None:
        super().__init__(message)
        self.info = info


def trace(direction: str, target: Target, text: str) -> None:
    """One record per message on ``migrate.voip.sip.trace``, Authorization values masked."""
    if trace_log.isEnabledFor(logging.DEBUG):
        trace_log.debug("%s %s\n%s", direction, target.label(), printable(mask_authorization(text)))


class Transport:
    """A connected socket for one target; ``local`` is the (address, port) our Via and Contact name."""

    reliable = False

    def __init__(self, target: Target, timers: Timers) -> None:
        self.target = target
        self.timers = timers
        self.sock: socket.socket | None = None
        self.local: tuple[str, int] = ("", 0)

    def transact(self, request: OutgoingRequest) -> Exchange:
        raise NotImplementedError

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def _send(self, request: OutgoingRequest, direction: str = "sent to") -> None:
        assert self.sock is not None
        trace(direction, self.target, request.text)
        try:
            self.sock.sendall(request.text.encode("utf-8"))
        except OSError as exc:
            raise _failure(self.target, exc)

    def _timeout(self, retransmissions: int = 0) -> SipTimeout:
        target = self.target
        text = f"no answer over {target.transport} from {target.label()} within {self.timers.timer_f:g} s"
        if not self.reliable:
            text += f" ({retransmissions} retransmission{'s' if retransmissions != 1 else ''})"
        return SipTimeout(text, retransmissions=retransmissions)

    def _received(self, data: bytes) -> SipResponse:
        trace("received from", self.target, data.decode("utf-8", errors="replace"))
        return parse_response(data)


class UdpTransport(Transport):
    """One UDP socket connected to the target (so only its datagrams arrive, and ICMP errors are seen)."""

    def __init__(self, target: Target, timers: Timers) -> None:
        super().__init__(target, timers)
        family, sockaddr = _resolve(target, socket.SOCK_DGRAM)
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            self.sock.connect(sockaddr)
        except OSError as exc:
            self.close()
            raise _failure(target, exc)
        self.local = self.sock.getsockname()[:2]

    def transact(self, request: OutgoingRequest) -> Exchange:
        started = time.monotonic()
        deadline = started + self.timers.timer_f
        interval, next_send = self.timers.t1, started + self.timers.t1
        retransmissions, proceeding = 0, False
        self._send(request)
        while True:
            now = time.monotonic()
            if now >= deadline:
                raise self._timeout(retransmissions)
            if now >= next_send:  # Timer E fired
                retransmissions += 1
                self._send(request, f"resent ({retransmissions}) to")
                interval = self.timers.t2 if proceeding else min(interval * 2, self.timers.t2)
                next_send = now + interval
                continue
            response = self._receive(min(next_send, deadline) - now)
            if response is None or not response.answers(request):
                continue
            if response.status < 200:
                proceeding = True
                continue
            return Exchange(response, time.monotonic() - started, retransmissions)

    def _receive(self, timeout: float) -> SipResponse | None:
        assert self.sock is not None
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data = self.sock.recv(MAX_MESSAGE + 1)
        except TimeoutError:
            return None
        except OSError as exc:
            raise _failure(self.target, exc)
        return self._received(data)


class StreamTransport(Transport):
    """TCP or TLS: one connection for every transaction of the client, no retransmission."""

    reliable = True

    def __init__(self, target: Target, timers: Timers, *, domain: str, ca_file: str | Path | None,
                 verify: bool) -> None:
        super().__init__(target, timers)
        self.domain = domain
        self.verify = verify
        self.tls_info: TlsInfo | None = None
        self._buffer = b""
        context = _tls_context(target, ca_file, verify) if target.transport == "tls" else None
        raw = _connect(target, timers)
        self.sock = self._handshake(raw, context) if context is not None else raw
        self.local = self.sock.getsockname()[:2]

    def transact(self, request: OutgoingRequest) -> Exchange:
        started = time.monotonic()
        deadline = started + self.timers.timer_f
        self._send(request)
        while True:
            response = self._receive(deadline)
            if response.answers(request) and response.status >= 200:
                return Exchange(response, time.monotonic() - started)

    def _receive(self, deadline: float) -> SipResponse:
        while True:
            self._buffer = self._buffer.lstrip(b"\r\n")  # keep-alive CRLFs (RFC 5626 §3.5.1)
            length = message_length(self._buffer)
            if length is not None:
                data, self._buffer = self._buffer[:length], self._buffer[length:]
                return self._received(data)
            self._buffer += self._read(deadline)

    def _read(self, deadline: float) -> bytes:
        assert self.sock is not None
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise self._timeout()
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            raise self._timeout()
        except OSError as exc:
            raise _failure(self.target, exc)
        if not chunk:
            raise SipConnectFailed(f"{self.target.label()}: the server closed the connection before a final "
                                   f"response")
        return chunk

    def _handshake(self, raw: socket.socket, context: ssl.SSLContext) -> ssl.SSLSocket:
        label = self.target.label()
        try:
            tls = context.wrap_socket(raw, server_hostname=self.domain)
        except ssl.SSLCertVerificationError as exc:
            raw.close()
            self.tls_info = self._inspect_unverified(exc.verify_message or exc.reason or str(exc))
            raise SipTlsFailed(f"TLS to {label}: certificate not trusted: {self.tls_info.error}",
                               info=self.tls_info)
        except ssl.SSLError as exc:
            raw.close()
            self.tls_info = _no_certificate(f"TLS handshake failed: {exc.reason or exc}")
            raise SipTlsFailed(f"TLS to {label}: {self.tls_info.error}", info=self.tls_info)
        except OSError as exc:
            raw.close()
            raise _failure(self.target, exc)
        self.tls_info = certificate_info(tls.getpeercert(binary_form=True), self.domain, chain_ok=self.verify,
                                         version=tls.version())
        if self.verify and not self.tls_info.name_ok:
            tls.close()
            raise SipTlsFailed(f"TLS to {label}: certificate {self.tls_info.error}", info=self.tls_info)
        return tls

    def _inspect_unverified(self, reason: str) -> TlsInfo:
        """What the refused certificate says, read over a second connection that is closed at once."""
        info = _no_certificate(reason)
        try:
            raw = _connect(self.target, self.timers)
        except SipConnectFailed:
            return info
        try:
            with _tls_context(self.target, None, False).wrap_socket(raw, server_hostname=self.domain) as tls:
                der, version = tls.getpeercert(binary_form=True), tls.version()
        except OSError:
            return info
        finally:
            raw.close()
        info = certificate_info(der, self.domain, chain_ok=False, version=version)
        info.error = reason
        return info


def open_transport(target: Target, timers: Timers, *, domain: str, ca_file: str | Path | None,
                   verify: bool) -> Transport:
    """A connected transport for ``target``; SipConnectFailed or SipTlsFailed when it cannot be had."""
    if target.transport == "udp":
        return UdpTransport(target, timers)
    return StreamTransport(target, timers, domain=domain, ca_file=ca_file, verify=verify)


def certificate_info(der: bytes | None, domain: str, *, chain_ok: bool, version: str | None) -> TlsInfo:
    """The names and expiry of a server certificate (DER), and whether it is issued for the SIP domain."""
    try:
        cert = x509.load_der_x509_certificate(der or b"")
        dns, uris = _alt_names(cert)
        not_after = cert.not_valid_after_utc
    except ValueError:
        return _no_certificate("the server's certificate cannot be read", chain_ok=chain_ok, version=version)
    wanted = domain.lower().rstrip(".")
    name_ok = any(n.lower().rstrip(".") == wanted for n in dns) or \
        any(u.lower() in (f"sip:{wanted}", f"sips:{wanted}") for u in uris)
    error = None
    if not name_ok:
        error = f"issued for {printable(', '.join(dns + uris)) or 'no DNS name or SIP URI'}, not {domain}"
    elif not chain_ok:
        error = "not verified (verification is turned off)"
    days_left = (not_after - datetime.now(UTC)).days
    return TlsInfo(chain_ok and name_ok, chain_ok, name_ok, error, dns + uris, not_after, days_left, version)


def _no_certificate(error: str, *, chain_ok: bool = False, version: str | None = None) -> TlsInfo:
    """TlsInfo when no certificate could be read (handshake failed, unreadable, no CA file)."""
    return TlsInfo(False, chain_ok, False, error, [], None, None, version)


def _alt_names(cert: x509.Certificate) -> tuple[list[str], list[str]]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], []
    return san.get_values_for_type(x509.DNSName), san.get_values_for_type(x509.UniformResourceIdentifier)


def _tls_context(target: Target, ca_file: str | Path | None, verify: bool) -> ssl.SSLContext:
    if not verify:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        try:
            context = ssl.create_default_context(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            info = _no_certificate(f"CA file {ca_file}: {getattr(exc, 'strerror', None) or exc}")
            raise SipTlsFailed(f"TLS to {target.label()}: {info.error}", info=info)
        context.check_hostname = False  # the name is checked in certificate_info, against the SIP domain
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _connect(target: Target, timers: Timers) -> socket.socket:
    family, sockaddr = _resolve(target, socket.SOCK_STREAM)
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(timers.connect)
    try:
        sock.connect(sockaddr)
    except TimeoutError:
        sock.close()
        raise SipConnectFailed(f"{target.label()}: no connection within {timers.connect:g} s")
    except OSError as exc:
        sock.close()
        raise _failure(target, exc)
    return sock


def _resolve(target: Target, kind: socket.SocketKind) -> tuple[socket.AddressFamily, tuple]:
    try:
        family, _, _, _, sockaddr = socket.getaddrinfo(target.address, target.port, type=kind)[0]
    except (socket.gaierror, UnicodeError) as exc:
        raise SipConnectFailed(f"{target.label()}: address not usable ({exc})")
    return family, sockaddr


def _failure(target: Target, exc: OSError) -> SipConnectFailed:
    if isinstance(exc, ConnectionRefusedError):
        why = "connection refused (nothing listening)"
    elif isinstance(exc, ConnectionResetError):
        why = "connection reset"
    elif isinstance(exc, TimeoutError):
        why = "timed out"
    else:
        why = exc.strerror or type(exc).__name__
    return SipConnectFailed(f"{target.label()}: {why}")


def hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
