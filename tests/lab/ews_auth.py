"""HTTP authentication of the lab's EWS responder, as IIS does it for Exchange's /EWS virtual directory.

Basic is checked on every request. NTLM is a handshake on one keep-alive connection (negotiate → 401 with a
challenge → authenticate) after which the connection itself is authenticated, as IIS keeps it; pyspnego is the
acceptor. ``negotiate`` is advertised as Kerberos-only Windows authentication: the lab has no KDC, so every
token sent under it is refused, as a server with NTLM turned off refuses NTLM.
"""

from __future__ import annotations

import atexit
import base64
import binascii
import os
import shutil
import tempfile
import threading
from pathlib import Path

import spnego

#: The methods a responder can offer, and how each is named in WWW-Authenticate.
SCHEMES = {"basic": "Basic", "ntlm": "NTLM", "negotiate": "Negotiate"}
#: The message type field of an NTLM negotiate message (MS-NLMP 2.2.1.1).
NTLM_NEGOTIATE = b"\x01\x00\x00\x00"

# pyspnego's NTLM acceptor reads its accounts from the file named by NTLM_USER_FILE, when the context is made
# and again when it checks the authenticate message. One file serves the process: the variable is set once,
# and the file is written with the accounts of the responder whose handshake runs, under this lock.
_NTLM_LOCK = threading.Lock()
_NTLM_FILE: Path | None = None


def _ntlm_user_file() -> Path:
    """The process's NTLM account file, created (and NTLM_USER_FILE set) on first use; call with the lock."""
    global _NTLM_FILE
    if _NTLM_FILE is None:
        directory = Path(tempfile.mkdtemp(prefix="govlab-ntlm-"))
        atexit.register(shutil.rmtree, directory, True)
        _NTLM_FILE = directory / "users"
        _NTLM_FILE.touch(mode=0o600)
        os.environ["NTLM_USER_FILE"] = str(_NTLM_FILE)
    return _NTLM_FILE


def ntlm_names(user: str) -> list[tuple[str, str]]:
    """(domain, user) pairs under which an NTLM client may name ``user``: as given (``DOMAIN\\user`` or a user
    principal name ``user@dns.domain``, which NTLM carries with an empty domain) and, for a principal name,
    the down-level ``DOMAIN\\user`` with the NetBIOS domain taken from the DNS domain's first label."""
    if "\\" in user:
        domain, name = user.split("\\", 1)
        return [(domain, name)]
    names = [("", user)]
    if "@" in user:
        name, dns = user.split("@", 1)
        names.append((dns.split(".", 1)[0].upper(), name))
    return names


class LabAuth:
    """What a responder accepts: the ``offered`` methods (a subset of :data:`SCHEMES`, in the order
    WWW-Authenticate lists them) for one account, its ``user`` and ``password``."""

    def __init__(self, offered: tuple[str, ...], user: str, password: str) -> None:
        unknown = [m for m in offered if m not in SCHEMES]
        if unknown or not offered:
            raise ValueError(f"auth methods must be some of {', '.join(SCHEMES)}; got {offered!r}")
        self.offered = tuple(offered)
        self.user = user
        self.password = password
        names = ntlm_names(user)
        self._ntlm_lines = "".join(f"{domain}:{name}:{password}\n" for domain, name in names)
        self._principals = {(f"{d}\\{n}" if d else n).lower() for d, n in names}

    def challenge(self) -> list[str]:
        """The WWW-Authenticate values of a 401 that starts authentication afresh."""
        from tests.lab.base import LOOPBACK

        return [f'Basic realm="{LOOPBACK}"' if m == "basic" else SCHEMES[m] for m in self.offered]

    def basic_ok(self, token: str) -> bool:
        try:
            raw = base64.b64decode(token.strip())
        except binascii.Error:
            return False
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:  # as IIS does: the server's code page (Latin-1 here) when it is not UTF-8
            text = raw.decode("latin-1")
        user, _, password = text.partition(":")
        return user.lower() == self.user.lower() and password == self.password

    def ntlm_step(self, context: spnego.ContextProxy | None, token: bytes) -> tuple[spnego.ContextProxy, bytes]:
        """One step of an NTLM handshake as the acceptor: (the context, the token to answer with). A
        handshake starts with no context; raises SpnegoError when the client's answer is wrong."""
        with _NTLM_LOCK:
            _ntlm_user_file().write_text(self._ntlm_lines)
            if context is None:
                # use_ntlm: pyspnego's own NTLM, never a system GSSAPI provider that would not read the file
                context = spnego.server(protocol="ntlm", options=spnego.NegotiateOptions.use_ntlm)
            return context, context.step(token) or b""

    def principal_is_user(self, principal: str | None) -> bool:
        """Whether the name the NTLM exchange authenticated is this responder's account."""
        return (principal or "").lower() in self._principals


class ConnectionAuth:
    """One connection's authentication state. ``check`` takes a request's Authorization header and says
    whether the request may proceed; when it may not, ``reply`` holds the WWW-Authenticate values to send."""

    def __init__(self, auth: LabAuth) -> None:
        self.auth = auth
        self.authenticated = False         # NTLM: the whole connection, once its handshake completed
        self.reply: list[str] = auth.challenge()
        self._context: spnego.ContextProxy | None = None

    def check(self, header: str) -> bool:
        self.reply = self.auth.challenge()
        scheme, _, token = header.strip().partition(" ")
        scheme = scheme.lower()
        if not scheme:
            return self.authenticated
        if scheme not in self.auth.offered:
            return False
        if scheme == "basic":
            return self.auth.basic_ok(token)
        if scheme == "negotiate":          # Kerberos only, and the lab has no KDC
            return False
        return self._ntlm(token)

    def _ntlm(self, token: str) -> bool:
        self.authenticated = False
        try:
            raw = base64.b64decode(token.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        if not raw.startswith(b"NTLMSSP\x00"):
            return False
        if raw[8:12] == NTLM_NEGOTIATE:
            self._context = None           # a negotiate message always starts a new handshake
        elif self._context is None:
            return False                   # an authenticate message with no handshake on this connection
        try:
            self._context, answer = self.auth.ntlm_step(self._context, raw)
        except Exception:                  # a wrong password (SpnegoError) or a token that does not parse
            self._context = None           # the handshake starts again from the top
            return False
        if self._context.complete:
            self.authenticated = self.auth.principal_is_user(self._context.client_principal)
            self._context = None
            return self.authenticated
        self.reply = [f"NTLM {base64.b64encode(answer).decode()}"]
        return False
