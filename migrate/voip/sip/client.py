"""The SIP client of ``govmigrate sip check``: OPTIONS and REGISTER (with digest) to one target.

A :class:`SipClient` talks to one :class:`Target` over one transport, connected on first use (TCP and TLS
keep that connection for every transaction). ``options()`` raises a :class:`SipError` subclass when no final
response comes (timeout, connection, TLS, a malformed response) and returns any status code it gets.
``register()`` and ``unregister()`` never raise for the server's doing: what went wrong is in the result, in
plain words.

A 503 with Retry-After is tried once more after ``min(Retry-After, retry_after_limit)``; a Retry-After over
the limit is not waited for, and a 503 without one is final. A REGISTER answered 423 (Interval Too Brief) is
sent once more with the Min-Expires the registrar asked for (RFC 3261 §10.2.8), and said so in the result; a 3xx
ends the registration with the Contacts it points to in the result, for the caller to follow or report.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from itertools import count
from pathlib import Path

import sipmessage

from migrate import __version__
from migrate.core.secrets import Secret
from migrate.voip.sip.digest import Challenge, DigestRefused, DigestSession, choose_challenge
from migrate.voip.sip.message import (
    OutgoingRequest,
    SipError,
    SipResponse,
    build_request,
    new_branch,
    new_call_id,
    new_tag,
    printable,
)
from migrate.voip.sip.transport import (
    DEFAULT_TIMERS,
    Exchange,
    SipTlsFailed,
    Target,
    Timers,
    TlsInfo,
    Transport,
    hostport,
    open_transport,
)


@dataclass
class Registration:
    """What an unregister needs of a registration: the same Call-ID and From tag, the next CSeq, our Contact
    and the credentials (in the digest session, which also counts nonce uses; None: no secret)."""

    user: str
    call_id: str
    from_tag: str
    contact: str
    digest: DigestSession | None
    cseq: int = 0

    def next_cseq(self) -> int:
        self.cseq += 1
        return self.cseq


@dataclass
class RegisterResult:
    """How a registration (and, after :meth:`SipClient.unregister`, its removal) went."""

    #: Every final reply in order, e.g. [401, 200] or [401, 403].
    replies: list[SipResponse]
    #: The last reply's status; None when no reply came.
    status: int | None = None
    #: The algorithm of the challenge answered.
    algorithm: str | None = None
    #: The URIs of the 200's Contact values.
    contacts: list[str] = field(default_factory=list)
    expires: int | None = None
    #: Seconds, the whole registration.
    rtt: float = 0.0
    #: Plain words when it did not reach 200.
    error: str | None = None
    #: After unregister(): True when Expires: 0 got 200.
    unregistered: bool | None = None
    #: After unregister(): why it did not get 200.
    unregister_error: str | None = None
    #: The Min-Expires of a 423 the registration was sent again with (RFC 3261 §10.2.8).
    min_expires: int | None = None
    #: A 3xx's Contact URIs: where the registrar redirected the registration.
    redirect: list[str] = field(default_factory=list)
    #: Our own Contact URI (what the registrar lists for the user after a 200).
    contact: str | None = None
    #: The transport failure that ended it (a SipError subclass), None when the server answered.
    failure: SipError | None = None
    registration: Registration | None = field(default=None, repr=False, compare=False)


class _Stop(Exception):
    """Ends a registration with a reason for the result's ``error``."""


class SipClient:
    """OPTIONS and REGISTER to one target; use as a context manager, or call :meth:`close`."""

    def __init__(self, target: Target, *, domain: str, timers: Timers = DEFAULT_TIMERS,
                 ca_file: str | Path | None = None, verify: bool = True, retry_after_limit: float = 10.0,
                 user_agent: str = f"govmigrate/{__version__}") -> None:
        self.target = target
        self.domain = domain
        self.timers = timers
        self.ca_file = ca_file
        self.verify = verify
        self.retry_after_limit = retry_after_limit
        self.user_agent = user_agent
        #: After the first TLS connect (also when it failed).
        self.tls_info: TlsInfo | None = None
        self._transport: Transport | None = None

    def __enter__(self) -> SipClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    # -- OPTIONS -------------------------------------------------------------------------------------

    def options(self, uri: str | None = None) -> Exchange:
        """OPTIONS ``uri`` (default ``sip:<domain>``): the final response, whatever its status."""
        uri = uri or f"sip:{self.domain}"
        call_id, tag = new_call_id(), new_tag()
        cseq = count(1)  # a retry after a 503 is a new transaction: next CSeq, new branch
        from_uri = f"sip:govmigrate@{self.domain}"

        def request(transport: Transport) -> OutgoingRequest:
            return self._request(transport, "OPTIONS", uri, next(cseq), call_id=call_id, from_uri=from_uri,
                                 from_tag=tag, to_uri=uri, extra=[("Accept", "application/sdp")])

        exchange = self._transact(request)
        if exchange.response.status != 503:
            return exchange
        wait, note = self._busy(exchange.response)
        if wait is None:
            return replace(exchange, note=note)
        time.sleep(wait)
        return replace(self._transact(request), attempts=2, waited=wait, note=note)

    # -- REGISTER ------------------------------------------------------------------------------------

    def register(self, user: str, password: Secret | str | None, *, auth_user: str | None = None,
                 expires: int = 60) -> RegisterResult:
        """REGISTER ``user`` with a Contact of ours, answering the digest challenge with ``password``."""
        secret = Secret(password, "sip password", remember=False) if isinstance(password, str) else password
        if secret is not None and not secret.reveal():
            secret = None
        sipmessage.URI.parse(f"sip:{user}@{self.domain}")  # ValueError before anything is sent
        result = RegisterResult([])
        try:
            transport = self._connected()
        except SipError as exc:
            return self._failed(result, exc)
        host, port = transport.local
        contact = f"sip:{user}@{hostport(host, port)};transport={self.target.transport}"
        digest = DigestSession(auth_user or user, secret) if secret is not None else None
        result.contact = contact
        result.registration = Registration(user, new_call_id(), new_tag(), contact, digest)
        self._run(result, expires)
        return result

    def unregister(self, result: RegisterResult) -> bool:
        """Remove our binding (same Call-ID, next CSeq, ``Expires: 0``); True when it got 200."""
        if result.registration is None:
            result.unregistered = False
            return False
        done = RegisterResult([], registration=result.registration)
        self._run(done, 0)
        result.unregistered = done.status == 200
        result.unregister_error = done.error
        return result.unregistered

    def _run(self, result: RegisterResult, expires: int) -> None:
        """REGISTER transactions until a final outcome, recorded in ``result``."""
        reg = result.registration
        assert reg is not None
        started = time.monotonic()
        challenge: Challenge | None = None
        stale_answered = busy_retried = brief_retried = False
        try:
            while True:
                response = self._register_once(reg, expires, challenge)
                result.replies.append(response)
                result.status = response.status
                if 200 <= response.status < 300:
                    self._registered(result, response)
                    return
                if response.status in (401, 407):
                    fresh = self._answerable(reg, response)
                    if challenge is not None:  # credentials were sent: only a stale nonce is answered, once
                        if not fresh.stale or stale_answered:
                            raise _Stop(self._refusal(response, answered=True))
                        stale_answered = True
                    challenge = fresh
                    result.algorithm = challenge.algorithm or "MD5"
                elif response.status == 503 and not busy_retried:
                    busy_retried = True
                    self._wait_if_busy(response)
                elif response.status == 423 and expires > 0 and not brief_retried:
                    brief_retried = True
                    expires = self._longer_expiry(response, expires)
                    result.min_expires = expires
                elif 300 <= response.status < 400:
                    result.redirect = self._contacts(response)
                    raise _Stop(f"redirected: {response.status} {response.reason[:80]}".strip() + " to "
                                + (", ".join(result.redirect) or "nowhere (no Contact)"))
                else:
                    raise _Stop(self._refusal(response, answered=challenge is not None))
        except _Stop as stop:
            result.error = str(stop)
        except SipError as exc:
            self._failed(result, exc)
        finally:
            result.rtt = time.monotonic() - started

    def _register_once(self, reg: Registration, expires: int, challenge: Challenge | None) -> SipResponse:
        uri = f"sip:{self.domain}"
        aor = f"sip:{reg.user}@{self.domain}"

        def request(transport: Transport) -> OutgoingRequest:
            extra = [("Contact", f"<{reg.contact}>"), ("Expires", str(expires))]
            if challenge is not None and reg.digest is not None:
                extra.append((challenge.answer_header, reg.digest.authorization(challenge, "REGISTER", uri)))
            return self._request(transport, "REGISTER", uri, reg.next_cseq(), call_id=reg.call_id,
                                 from_uri=aor, from_tag=reg.from_tag, to_uri=aor, extra=extra)

        return self._transact(request).response

    def _answerable(self, reg: Registration, response: SipResponse) -> Challenge:
        """The challenge of a 401/407 to answer; _Stop when there is none to answer, or no secret."""
        if reg.digest is None:
            raise _Stop(f"no usable secret: the server asked for credentials ({response.status}) and none "
                        f"were given")
        proxy = response.status == 407
        try:
            return choose_challenge(response.headers("Proxy-Authenticate" if proxy else "WWW-Authenticate"),
                                    proxy=proxy)
        except DigestRefused as exc:
            raise _Stop(f"no usable challenge: {exc}")

    @staticmethod
    def _longer_expiry(response: SipResponse, expires: int) -> int:
        """The Min-Expires a 423 asks for (RFC 3261 §10.2.8); _Stop when it gives none longer than ours."""
        minimum = _seconds(response.header("Min-Expires"))
        if minimum is None or minimum <= expires:
            said = f"Min-Expires {minimum}" if minimum is not None else "no Min-Expires"
            raise _Stop(f"423 Interval Too Brief with {said}: nothing longer to ask for than Expires {expires}")
        return minimum

    @staticmethod
    def _contacts(response: SipResponse) -> list[str]:
        try:
            return [str(a.uri) for v in response.headers("Contact") for a in sipmessage.Address.parse_many(v)]
        except ValueError:
            return [printable(v) for v in response.headers("Contact")]

    def _wait_if_busy(self, response: SipResponse) -> None:
        wait, note = self._busy(response)
        if wait is None:
            raise _Stop(note)
        time.sleep(wait)

    def _busy(self, response: SipResponse) -> tuple[float | None, str]:
        """How long to wait before trying a 503 once more (None: do not), and why, in plain words."""
        retry_after = _seconds((response.header("Retry-After") or "").split(";")[0].split("(")[0])
        if retry_after is None:
            return None, "busy: 503 without Retry-After"
        if retry_after > self.retry_after_limit:
            limit = self.retry_after_limit
            return None, f"busy: Retry-After {retry_after} s exceeds the limit of {limit:g} s"
        return retry_after, f"busy: tried once more after Retry-After {retry_after} s"

    @staticmethod
    def _refusal(response: SipResponse, *, answered: bool) -> str:
        what = f"{response.status} {response.reason[:80]}".strip()
        if response.status == 403 and answered:
            return f"{what} after the challenge was answered: wrong password or unknown user"
        if response.status in (401, 407):
            return f"{what} again after credentials: the password is wrong"
        if response.status == 503:
            return f"busy: {what} again after waiting once"
        return f"refused: {what}"

    def _registered(self, result: RegisterResult, response: SipResponse) -> None:
        reg = result.registration
        assert reg is not None
        result.expires = _seconds(response.header("Expires"))
        try:
            addresses = [a for v in response.headers("Contact") for a in sipmessage.Address.parse_many(v)]
        except ValueError:
            result.contacts = response.headers("Contact")
            return
        result.contacts = [str(a.uri) for a in addresses]
        ours = str(sipmessage.URI.parse(reg.contact))
        for address in addresses:
            param = _seconds(address.parameters.get("expires"))
            if str(address.uri) == ours and param is not None:
                result.expires = param

    # -- transactions --------------------------------------------------------------------------------

    def _connected(self) -> Transport:
        if self._transport is None:
            try:
                self._transport = open_transport(self.target, self.timers, domain=self.domain,
                                                 ca_file=self.ca_file, verify=self.verify)
            except SipTlsFailed as exc:
                self.tls_info = exc.info
                raise
            self.tls_info = getattr(self._transport, "tls_info", None)
        return self._transport

    def _transact(self, build: Callable[[Transport], OutgoingRequest]) -> Exchange:
        """One transaction; a stream connection that failed in it is closed (the next one reconnects)."""
        transport = self._connected()
        try:
            return transport.transact(build(transport))
        except SipError:
            if transport.reliable:
                self.close()
            raise

    def _request(self, transport: Transport, method: str, uri: str, cseq: int, *, call_id: str, from_uri: str,
                 from_tag: str, to_uri: str, extra: Sequence[tuple[str, str]]) -> OutgoingRequest:
        branch = new_branch()
        host, port = transport.local
        via = f"SIP/2.0/{self.target.transport.upper()} {hostport(host, port)};branch={branch};rport"
        headers = [("Via", via), ("Max-Forwards", "70"), ("From", f"<{from_uri}>;tag={from_tag}"),
                   ("To", f"<{to_uri}>"), ("Call-ID", call_id), ("CSeq", f"{cseq} {method}"), *extra,
                   ("User-Agent", self.user_agent)]
        return build_request(method, uri, headers, cseq=cseq, branch=branch)

    @staticmethod
    def _failed(result: RegisterResult, exc: SipError) -> RegisterResult:
        result.failure = exc
        result.error = exc.message
        return result


def _seconds(text: str | None) -> int | None:
    """A delta-seconds value (Expires, Retry-After, an expires parameter); None when absent or not one."""
    text = (text or "").strip()
    return int(text) if re.fullmatch(r"[0-9]{1,10}", text) else None
