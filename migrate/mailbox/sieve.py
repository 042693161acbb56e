"""Sieve scripts over ManageSieve (RFC 5804), and what a script does that matters to a move.

A ministry server's scripts are read, and the central host's written, through sievelib's ManageSieve client
(STARTTLS verified as the IMAP connection is, the same three login methods: ``user*master``, SASL PLAIN with an
authorization identity, or the user's own password). sievelib's parser reads a script to count its rules, find
its vacation reply and every ``redirect``; a rule that redirects mail outside the government is *held*: kept in
the script inside ``if false { ... }`` (sievelib's own way of disabling a filter), so nothing forwards until
someone decides. Nothing here writes Sieve by hand: scripts are parsed and generated with sievelib.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
import socket
import ssl
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from sievelib import commands as sieve_commands
from sievelib.factory import FiltersSet
from sievelib.managesieve import Client, Error
from sievelib.parser import Parser

from migrate.core.errors import LoginFailed, RemoteError
from migrate.core.secrets import Secret
from migrate.mailbox.imap import Credentials, Endpoint, describe_failure, tls_context

log = logging.getLogger(__name__)

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: The name comments rule editors write before each rule: sievelib's, and Roundcube's ("# rule:[name]").
_RULE_NAMES = (re.compile(r"^#?\s*Filter:\s*(.+)$"), re.compile(r"^#?\s*rule:\[(.*)\]$"))


def digest(text: str) -> str:
    """A script's fingerprint, the same for what was sent and what the server gives back (ManageSieve sends
    CRLF line ends, and servers may drop a last line end)."""
    return hashlib.sha256(text.replace("\r\n", "\n").rstrip().encode("utf-8")).hexdigest()


def sieve_endpoint(imap: Endpoint, port: int) -> Endpoint:
    """The ManageSieve service beside an IMAP endpoint: same host, CA and timeout, STARTTLS unless the IMAP
    connection is in clear text (which the project file must have allowed)."""
    return replace(imap, port=port, tls="none" if imap.tls == "none" else "starttls",
                   label=f"{imap.label} ManageSieve")


def inside(address: str, domains: Iterable[str]) -> bool:
    """Whether ``address`` belongs to one of ``domains`` (or a subdomain of one). A variable or a malformed
    address is outside: nobody can tell where it goes."""
    address = address.strip().strip("<>")
    if "@" not in address or "${" in address:
        return False
    domain = address.rsplit("@", 1)[1].lower().rstrip(".")
    return any(domain == d or domain.endswith("." + d) for d in domains)


# -- ManageSieve ------------------------------------------------------------------------------------------

class _Client(Client):
    """sievelib's client with our TLS context (the project file's CA, verification and host name) and a
    connect that honours the project file's timeout (sievelib's own waits forever for the TCP connect)."""

    def __init__(self, endpoint: Endpoint) -> None:
        super().__init__(endpoint.host, endpoint.port)
        self.endpoint = endpoint

    def _Client__enable_ssl(self, keyfile: str | None = None, certfile: str | None = None) -> None:
        self.sock = tls_context(self.endpoint).wrap_socket(self.sock, server_hostname=self.endpoint.host)

    def open(self, login: str, password: str, authz: str) -> None:
        ep = self.endpoint
        # No TLS here only where the server's IMAP has none either (sieve_endpoint): the project file allowed
        # clear text for this server, and its IMAP connection, always opened first, has said so once.
        try:
            self.sock = socket.create_connection((ep.host, ep.port), timeout=ep.timeout)
            if not self._Client__get_capabilities():
                raise RemoteError(f"{ep.label} ({ep.host}:{ep.port}): no ManageSieve greeting")
            if ep.tls != "none" and not self._Client__starttls():
                raise RemoteError(f"{ep.label} ({ep.host}:{ep.port}): STARTTLS refused; not sending credentials")
            ok = self._Client__authenticate(login, password, authz, "PLAIN")
        except Error as exc:
            raise RemoteError(f"{ep.label} ({ep.host}:{ep.port}): {exc}")
        except (OSError, ssl.SSLError) as exc:
            raise describe_failure(exc, ep)
        if not ok:
            raise LoginFailed(f"{ep.label} ({ep.host}:{ep.port}): login refused: {_text(self.errmsg)}")


def _text(value: Any) -> str:
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value or "")
    return _CONTROL.sub(" ", text).strip()


@dataclass
class Script:
    name: str
    text: str
    active: bool


class ManageSieve:
    """One user's scripts on one server. Every failure is a :class:`RemoteError` naming the server."""

    def __init__(self, endpoint: Endpoint, creds: Credentials, user_login: str,
                 user_password: Secret | None = None) -> None:
        if _CONTROL.search(user_login) or (creds.method == "master_user" and creds.separator in user_login):
            raise LoginFailed(f"{endpoint.label}: refusing to log in as {user_login!r}")
        self.endpoint = endpoint
        self.client = _Client(endpoint)
        if creds.method == "master_user":
            assert creds.admin_password is not None
            login, password, authz = f"{user_login}{creds.separator}{creds.admin_user}", creds.admin_password, ""
        elif creds.method == "sasl_plain":
            assert creds.admin_password is not None and creds.admin_user
            login, password, authz = creds.admin_user, creds.admin_password, user_login
        else:
            if user_password is None:
                raise LoginFailed(f"{endpoint.label}: no password for {user_login} in the user list")
            login, password, authz = user_login, user_password, ""
        self.client.open(login, password.reveal(), authz)

    @property
    def extensions(self) -> list[str]:
        return [e.lower() for e in self.client.get_sieve_capabilities()]

    def _fail(self, what: str) -> RemoteError:
        return RemoteError(f"{self.endpoint.label}: {what}: {_text(self.client.errmsg) or 'refused'}")

    def _call(self, what: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except Error as exc:
            raise RemoteError(f"{self.endpoint.label}: {what}: {exc}")
        except (OSError, ssl.SSLError) as exc:
            raise describe_failure(exc, self.endpoint)

    def listing(self) -> tuple[str | None, list[str]]:
        """(the active script's name or None, every script's name)."""
        found = self._call("LISTSCRIPTS", self.client.listscripts)
        if found is None:
            raise self._fail("LISTSCRIPTS")
        active, others = found
        return active, ([active] if active else []) + list(others)

    def get(self, name: str) -> str:
        text = self._call(f"GETSCRIPT {name!r}", self.client.getscript, name)
        if text is None:
            raise self._fail(f"GETSCRIPT {name!r}")
        return text

    def scripts(self) -> list[Script]:
        active, names = self.listing()
        return [Script(n, self.get(n), n == active) for n in names]

    def check(self, text: str) -> str | None:
        """The server's objection to ``text`` (CHECKSCRIPT), or None when it would accept it."""
        if self._call("CHECKSCRIPT", self.client.checkscript, text):
            return None
        return _text(self.client.errmsg) or "refused"

    def put(self, name: str, text: str) -> None:
        if not self._call(f"PUTSCRIPT {name!r}", self.client.putscript, name, text):
            raise self._fail(f"PUTSCRIPT {name!r}")

    def activate(self, name: str) -> None:
        if not self._call(f"SETACTIVE {name!r}", self.client.setactive, name):
            raise self._fail(f"SETACTIVE {name!r}")

    def delete(self, name: str) -> None:
        if not self._call(f"DELETESCRIPT {name!r}", self.client.deletescript, name):
            raise self._fail(f"DELETESCRIPT {name!r}")

    def close(self) -> None:
        try:
            self.client.logout()
        except Exception:
            pass
        finally:
            if self.client.sock is not None:
                self.client.sock.close()
                self.client.sock = None

    def __enter__(self) -> ManageSieve:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- what a script does ------------------------------------------------------------------------------------

@dataclass
class Rule:
    """One top-level command of a script (a rule, as rule editors see it)."""

    name: str
    redirects: list[str] = field(default_factory=list)
    vacation: bool = False
    disabled: bool = False
    #: The redirects to addresses outside the government.
    outside: list[str] = field(default_factory=list)


@dataclass
class ScriptFacts:
    rules: list[Rule] = field(default_factory=list)
    #: Why sievelib could not read the script (then nothing else is known of it).
    error: str | None = None

    @property
    def vacation(self) -> bool:
        return any(r.vacation and not r.disabled for r in self.rules)

    @property
    def forwarding_outside(self) -> list[Rule]:
        return [r for r in self.rules if r.outside and not r.disabled]


def _parse(text: str) -> Parser:
    parser = Parser()
    if not parser.parse(text):
        raise ValueError(_text(parser.error) or "not Sieve")
    return parser


def _unquote(value: Any) -> list[str]:
    values = value if isinstance(value, list) else [value]
    out = []
    for v in values:
        v = v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
        out.append(re.sub(r"\\(.)", r"\1", v[1:-1]) if len(v) >= 2 and v[0] == v[-1] == '"' else v)
    return out


def _walk(command: Any) -> Iterable[Any]:
    yield command
    for child in getattr(command, "children", []) or []:
        yield from _walk(child)


def _rule_name(command: Any, number: int) -> str:
    for comment in getattr(command, "hash_comments", []) or []:
        comment = comment.decode("utf-8", "replace") if isinstance(comment, bytes) else str(comment)
        for pattern in _RULE_NAMES:
            match = pattern.match(comment.strip())
            if match and match.group(1).strip():
                return _CONTROL.sub(" ", match.group(1).strip())[:200]
    return f"rule {number}"


def _disabled(command: Any) -> bool:
    return isinstance(command, sieve_commands.IfCommand) and \
        isinstance(command.arguments.get("test"), sieve_commands.FalseCommand)


def analyse(text: str, government: Iterable[str]) -> ScriptFacts:
    """The rules of a script (each top-level command but ``require``), with their redirects and vacation
    replies, and which redirects leave the government."""
    government = tuple(government)
    try:
        parser = _parse(text)
    except ValueError as exc:
        return ScriptFacts(error=str(exc))
    facts = ScriptFacts()
    names: set[str] = set()
    for command in parser.result:
        if isinstance(command, sieve_commands.RequireCommand):
            continue
        name = _rule_name(command, len(facts.rules) + 1)
        while name in names:
            name += " (2)"
        names.add(name)
        rule = Rule(name, disabled=_disabled(command))
        for node in _walk(command):
            if isinstance(node, sieve_commands.RedirectCommand):
                rule.redirects += _unquote(node.arguments.get("address"))
            elif isinstance(node, sieve_commands.VacationCommand):
                rule.vacation = True
        rule.outside = [a for a in rule.redirects if not inside(a, government)]
        facts.rules.append(rule)
    return facts


def hold_back(text: str, names: set[str], government: Iterable[str]) -> str:
    """The script with each rule named in ``names`` disabled (``if false { ... }``): it stays in the script, for
    people to turn on once they decide. The rest of the script is generated again by sievelib (its comments
    other than rule names are not kept)."""
    parser = _parse(text)
    filters = FiltersSet("govmigrate")
    facts = analyse(text, government)
    for command in parser.result:
        if isinstance(command, sieve_commands.RequireCommand):
            for capability in _unquote(command.arguments.get("capabilities")):
                filters.require(capability)
    body = [c for c in parser.result if not isinstance(c, sieve_commands.RequireCommand)]
    for rule, command in zip(facts.rules, body, strict=True):
        filters.filters.append({"name": rule.name, "content": command, "enabled": True})
        if rule.name in names:
            filters.disablefilter(rule.name)
    out = io.StringIO()
    filters.tosieve(out)
    return out.getvalue()
