"""The project file (``migration.yaml``) as typed, validated objects.

Validation reports every problem at once as ``file:line: field: message``; unknown keys are errors so
that a typo never silently falls back to a default. Sections for DNS, SIP and the wave policy are
validated when present; later issues give them their behaviour.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import parse_qsl, quote, urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from migrate.core.errors import Problem, ValidationFailed
from migrate.core.secrets import SecretRef, parse_ref
from migrate.core.timezones import Zone, zone_named
from migrate.core.yamlsrc import Located, dotted, load_yaml_file, pydantic_problems

SCHEMA_VERSION = 1

_SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
_DOMAIN_RE = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
_HOST_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$|^\[?[0-9a-fA-F:.]+\]?$")
_SIZE_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([kmgt]?i?b?)?\s*(?:/s)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 1000**2, "mb": 1000**2,
          "mib": 1024**2, "g": 1000**3, "gb": 1000**3, "gib": 1024**3, "t": 1000**4, "tb": 1000**4,
          "tib": 1024**4}


def short_name(value: str, example: str) -> str:
    """A short lower-case identifier (a source id, a wave id), as typed on command lines."""
    if not _SLUG_RE.match(value):
        raise ValueError(f"must be a short lower-case name: letters, digits, '-' or '_' (e.g. {example})")
    return value


def _secret_ref(value: str) -> str:
    parse_ref(value)
    return value.strip()


def _hostname(value: str) -> str:
    if not _HOST_RE.match(value):
        raise ValueError(f"{value!r} is not a host name or IP address")
    return value


def _no_userinfo(url: str) -> None:
    """Refuse ``scheme://user:password@host``: the project file holds references, never passwords.
    The message never repeats the URL, which would print the password it holds."""
    authority = re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://([^/?#]*)", url.strip())
    if authority and "@" in authority.group(1):
        raise ValueError("must not hold a user name or password (user:password@ before the host); give the "
                         "user in 'user' and the password as a secret reference in 'password'")


def _regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression: {exc}")
    return value


def parse_byte_rate(value: int | float | str) -> int:
    """``"2 MB/s"``, ``"512KiB/s"``, ``1000000`` → bytes per second."""
    if isinstance(value, bool):
        raise ValueError("must be a size such as '2 MB/s' or a number of bytes per second")
    if isinstance(value, (int, float)):
        number, unit = float(value), ""
    else:
        m = _SIZE_RE.match(value)
        if not m:
            raise ValueError(f"{value!r} is not a rate; write e.g. '2 MB/s', '512 KiB/s' or 1000000")
        number, unit = float(m.group(1)), (m.group(2) or "").lower()
        if unit not in _UNITS:
            raise ValueError(f"unknown unit in {value!r}")
    rate = int(number * _UNITS[unit])
    if rate <= 0:
        raise ValueError("must be greater than zero")
    return rate


SecretRefStr = Annotated[str, AfterValidator(_secret_ref)]
HostName = Annotated[str, AfterValidator(_hostname)]
Regex = Annotated[str, AfterValidator(_regex)]
Port = Annotated[int, Field(ge=1, le=65535)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class TlsEndpoint(Strict):
    """Where a server listens and how its TLS is checked."""

    host: HostName
    port: Port | None = None
    tls: Literal["implicit", "starttls", "none"] = "implicit"
    #: CA bundle to verify this server's certificate with (default: the system's).
    ca_file: str | None = None
    #: Certificates are verified unless this is explicitly false for this host.
    verify_certificate: bool = True
    #: ``tls: none`` sends the password in clear text; it is refused unless this is true for this host.
    allow_cleartext: bool = False
    timeout: float = Field(60.0, gt=0, le=3600)

    @property
    def effective_port(self) -> int:
        if self.port:
            return self.port
        return 993 if self.tls == "implicit" else 143


class AdminLogin(Strict):
    """How the migrator logs into any user's mailbox on an IMAP server."""

    #: master_user: LOGIN "user<sep>admin"; sasl_plain: AUTHENTICATE PLAIN with authorization
    #: identity; user_password: each user's own password from the user list.
    method: Literal["master_user", "sasl_plain", "user_password"]
    user: str | None = None
    password: SecretRefStr | None = None
    separator: str = Field("*", min_length=1, max_length=1)

    @model_validator(mode="after")
    def _needs_admin(self) -> AdminLogin:
        if self.method in ("master_user", "sasl_plain"):
            missing = [n for n in ("user", "password") if not getattr(self, n)]
            if missing:
                raise ValueError(f"login method {self.method} needs {' and '.join(missing)}")
        elif self.user or self.password:
            raise ValueError("login method user_password takes each user's password from the user list; "
                             "remove user/password here")
        return self


class ImapServer(TlsEndpoint):
    type: Literal["imap"]
    login: AdminLogin
    #: The server's ManageSieve port (RFC 5804, usually 4190) on the same host, with the same login and TLS
    #: settings (STARTTLS unless ``tls: none``): the users' filter rules and vacation replies are read there.
    #: Unset: the source is not asked, and its rules are listed as not read.
    sieve_port: Port | None = None


class EwsServer(Strict):
    type: Literal["ews"]
    #: EWS endpoint, e.g. https://mail.health.gov.bz/EWS/Exchange.asmx (required unless autodiscover).
    url: str | None = None
    autodiscover: bool = False
    auth: Literal["ntlm", "basic"] = "ntlm"
    #: impersonation (ApplicationImpersonation role) or delegate (full access granted per mailbox).
    access: Literal["impersonation", "delegate"] = "impersonation"
    user: str
    password: SecretRefStr
    ca_file: str | None = None
    verify_certificate: bool = True
    #: An ``http://`` url sends the login (basic or NTLM) unprotected; refused unless this is true.
    allow_cleartext: bool = False
    timeout: float = Field(120.0, gt=0, le=3600)
    #: Where a user's archive mailbox (Exchange In-Place/Online Archive) lands on the central host: its folders
    #: go below this folder, e.g. Archive/Inbox. Null: the archive is counted by the inventory, not migrated.
    archive_folder: str | None = "Archive"

    @field_validator("archive_folder")
    @classmethod
    def _archive_folder(cls, value: str | None) -> str | None:
        if value is None:
            return value
        value = value.strip().strip("/")
        if not value or any(not part.strip() or any(ch < " " or ch == "\x7f" for ch in part)
                                for part in value.split("/")):
            raise ValueError("give a folder name such as Archive (parts separated by /, no control characters), "
                             "or null to leave archive mailboxes out")
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        _no_userinfo(value)
        if not re.match(r"^https?://[^/\s]+(/\S*)?$", value):
            raise ValueError("must be an http:// or https:// URL of the EWS endpoint")
        return value

    @property
    def cleartext(self) -> bool:
        """The url is http://, so the login and the mail cross the network unprotected."""
        return bool(self.url) and self.url.lower().startswith("http://")

    @model_validator(mode="after")
    def _url_or_autodiscover(self) -> EwsServer:
        if not self.url and not self.autodiscover:
            raise ValueError("give the EWS endpoint url, or set autodiscover: true")
        return self


class FolderRule(Strict):
    """A project-file folder rule; applied in order, before the built-in mappings."""

    match: Regex
    rename: str | None = None
    exclude: bool = False

    @model_validator(mode="after")
    def _one_action(self) -> FolderRule:
        if bool(self.rename) == bool(self.exclude):
            raise ValueError("a folder rule needs exactly one of rename or exclude: true")
        return self


class FolderPolicy(Strict):
    rules: list[FolderRule] = []
    #: Put every migrated folder under this destination folder (e.g. "Migrated").
    prefix: str | None = None


PBX_FORMATS = ("freepbx-extensions", "freepbx-dids", "pjsip", "sip", "voicemail", "kamailio-dbtext", "kamailio-csv")


class PbxInput(Strict):
    """One file a ministry's PBX holds, read as the tool that wrote it writes it."""

    #: freepbx-extensions / freepbx-dids: FreePBX Bulk Handler exports; pjsip (also FreePBX's split
    #: pjsip.endpoint.conf, pjsip.auth.conf, pjsip.aor.conf), sip (sip.conf friends), voicemail
    #: (voicemail.conf); kamailio-dbtext (a db_text subscriber table) or kamailio-csv (its CSV export).
    format: Literal["freepbx-extensions", "freepbx-dids", "pjsip", "sip", "voicemail", "kamailio-dbtext",
                    "kamailio-csv"]
    #: Relative to the project file.
    path: str
    #: auto: UTF-8, else Windows-1252/Latin-1 (as older PBX tools write names such as "José Pérez").
    encoding: Literal["auto", "utf-8", "latin-1", "cp1252"] = "auto"


class PbxSection(Strict):
    """A ministry's PBX: where its extensions, DIDs and voicemail boxes are described."""

    #: Ministries whose PBXs share one dial plan (their extension numbers must not collide) name the same
    #: dial plan; by default each source is its own.
    dial_plan: str | None = None
    inputs: list[PbxInput] = Field(min_length=1)


class Source(Strict):
    """One ministry's mail server and its users."""

    id: str
    ministry: str = Field(min_length=1)
    domains: list[str] = Field(min_length=1)
    server: Annotated[ImapServer | EwsServer, Field(discriminator="type")]
    #: CSV user list, relative to the project file.
    users: str
    #: Maximum simultaneous connections to this server.
    connections: int = Field(4, ge=1, le=64)
    #: Bandwidth cap for this source's link, e.g. "2 MB/s"; none by default.
    bandwidth: int | str | None = None
    folders: FolderPolicy = FolderPolicy()
    #: The ministry's PBX (phones move to the hosted VOIP platform in the same waves as their users' mail).
    pbx: PbxSection | None = None

    @field_validator("id")
    @classmethod
    def _slug(cls, value: str) -> str:
        return short_name(value, "health")

    @field_validator("domains")
    @classmethod
    def _domains(cls, value: list[str]) -> list[str]:
        bad = [d for d in value if not _DOMAIN_RE.match(d.lower())]
        if bad:
            raise ValueError(f"not a mail domain: {', '.join(bad)}")
        return [d.lower() for d in value]

    @field_validator("bandwidth")
    @classmethod
    def _bandwidth(cls, value: int | str | None) -> int | None:
        return None if value is None else parse_byte_rate(value)

    @property
    def bandwidth_bps(self) -> int | None:
        return self.bandwidth  # type: ignore[return-value]  # normalised by the validator


class CentralLogin(Strict):
    method: Literal["master_user", "sasl_plain"]
    user: str
    password: SecretRefStr
    separator: str = Field("*", min_length=1, max_length=1)


class CentralImap(TlsEndpoint):
    pass


_LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1", "[::1]")


class CentralDav(Strict):
    """The data centre's groupware (CalDAV/CardDAV): where Exchange calendars and contacts go."""

    #: Base URL of the DAV server, e.g. https://dav.gov.bz/ (each user's collections are below ``home``).
    url: str
    #: Where a user's calendar and address book live below ``url``; ``{email}`` is the user's address.
    home: str = "{email}/"
    #: The migration account that may write every user's collections (its password as a secret reference).
    user: str = Field(min_length=1)
    password: SecretRefStr
    ca_file: str | None = None
    verify_certificate: bool = True
    #: An ``http://`` url to a host other than loopback sends the login unprotected; refused unless true.
    allow_cleartext: bool = False
    timeout: float = Field(60.0, gt=0, le=3600)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        _no_userinfo(value)
        if not re.match(r"^https?://[^/\s]+(/\S*)?$", value):
            raise ValueError("must be an http:// or https:// URL of the CalDAV/CardDAV server")
        return value if value.endswith("/") else value + "/"

    @field_validator("home")
    @classmethod
    def _home(cls, value: str) -> str:
        if "{email}" not in value or value.startswith("/") or ".." in value:
            raise ValueError("must be a relative path holding {email}, e.g. '{email}/' or 'users/{email}/'")
        try:
            value.format(email="x")
        except (KeyError, IndexError, ValueError):
            raise ValueError("may hold only the placeholder {email}")
        return value if value.endswith("/") else value + "/"

    @property
    def cleartext(self) -> bool:
        """http:// to a host other than loopback: the login and the calendars cross the network unprotected."""
        parts = urlsplit(self.url)
        return parts.scheme.lower() == "http" and (parts.hostname or "").lower() not in _LOOPBACK_HOSTS


class CentralHost(Strict):
    """The central IMAP host every mailbox moves to (and, with ``dav``, its groupware server)."""

    imap: CentralImap
    login: CentralLogin
    #: Maximum simultaneous connections to the central host.
    connections: int = Field(8, ge=1, le=256)
    #: The longest keyword the central host accepts (Dovecot: mail_max_keyword_length, 50 by default).
    #: Longer Exchange categories are shortened with a hash; the store keeps their full names.
    max_keyword_length: int = Field(50, ge=20, le=1000)
    #: Folder rules applied to every source, after the source's own rules.
    folders: FolderPolicy = FolderPolicy()
    #: CalDAV/CardDAV server for Exchange calendars and contacts; without it they are exported to files.
    dav: CentralDav | None = None
    #: The central host's ManageSieve port (RFC 5804), same host, login and TLS settings as ``imap`` (STARTTLS
    #: unless ``tls: none``): mail rules and out-of-office replies become Sieve scripts there. null: the host
    #: has none, and rules and out-of-office replies are listed as not moved.
    sieve_port: Port | None = 4190
    #: Domains inside the government besides the sources' own (a domain covers its subdomains): a rule that
    #: forwards or redirects mail anywhere else is a rule forwarding outside the government.
    government_domains: list[str] = []
    #: Rules that forward mail outside the government are moved but left off (and listed) unless this is true:
    #: forwarding rules are a known way for mail to leave.
    allow_external_forwarding: bool = False

    @field_validator("government_domains")
    @classmethod
    def _government_domains(cls, value: list[str]) -> list[str]:
        bad = [d for d in value if not _DOMAIN_RE.match(d.lower())]
        if bad:
            raise ValueError(f"not a domain: {', '.join(bad)}")
        return [d.lower() for d in value]


class StateStore(Strict):
    """The shared state store when several migration hosts work one plan: a PostgreSQL database.

    Without ``state:`` the workspace's own ``state.db`` (SQLite) is used, as on one host."""

    #: postgresql://HOST[:PORT]/DATABASE (the database must exist; govmigrate creates its tables).
    url: str
    user: str = Field(min_length=1)
    #: The login's password as a secret reference (env:NAME or file:PATH); none for certificate or peer login.
    password: SecretRefStr | None = None
    #: CA bundle to verify the database server's certificate with (default: the system's).
    ca_file: str | None = None
    #: TLS to a database server that is not on this machine is verified unless this is explicitly false.
    verify_certificate: bool = True
    #: How long a dropped connection is tried again (a database restart, a failover) before a command gives up
    #: (exit 4); a worker's claims lapse meanwhile and other workers take them over.
    reconnect_seconds: float = Field(90.0, ge=1, le=3600)
    #: How long one statement may wait for the database (a paused server, a network that swallows packets)
    #: before the connection counts as lost; then reconnect_seconds bounds the rest.
    timeout_seconds: float = Field(30.0, ge=1, le=600)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        _no_userinfo(value)
        if not re.match(r"^postgres(ql)?://[^/\s]*/[^/?\s]+(\?\S*)?$", value):
            raise ValueError("must be a postgresql://HOST[:PORT]/DATABASE URL")
        # libpq takes any connection parameter in the query too: a password there is a password in the file.
        secret = [k for k, _v in parse_qsl(urlsplit(value).query, keep_blank_values=True)
                  if k.lower() in ("password", "sslpassword", "passfile")]
        if secret:
            raise ValueError(f"must not hold {secret[0]}= in its query: give the password as a secret reference "
                             "in 'password' (env:NAME or file:PATH)")
        return value

    def dsn(self) -> str:
        """The URL with the user (never the password) in it, for the driver and for messages."""
        _scheme, rest = self.url.split("://", 1)
        return f"postgresql://{quote(self.user, safe='')}@{rest}"


class PilotPolicy(Strict):
    #: Users with this flag in the user lists form the pilot wave.
    flag: str = "pilot"
    #: If nobody has the flag: this many of the smallest mailboxes of `from_source` are the pilot.
    count: int = Field(5, ge=0, le=1000)
    from_source: str | None = None


class Window(Strict):
    #: Start of the maintenance window, in the programme's time zone, "HH:MM".
    start: str = "22:00"
    hours: float = Field(6.0, gt=0, le=72)

    @field_validator("start")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        if not re.match(r"^([01][0-9]|2[0-3]):[0-5][0-9]$", value):
            raise ValueError("must be a time of day as HH:MM, e.g. 22:00")
        return value


class WavePolicy(Strict):
    pilot: PilotPolicy = PilotPolicy()
    max_mailboxes: int = Field(100, ge=1)
    max_gb: float = Field(200.0, gt=0)
    window: Window = Window()
    #: Throughput assumed before any run has measured one, in MB/s.
    default_rate_mb_s: float = Field(10.0, gt=0)


def _size(value: int | str) -> int:
    return parse_byte_rate(value)


ByteSize = Annotated[int | str, AfterValidator(_size)]


class SyncTuning(Strict):
    """How the sync engine batches its work; the defaults suit most links."""

    #: One FETCH and one MULTIAPPEND carry at most this much mail...
    batch_bytes: ByteSize = 2_000_000
    #: ...and at most this many messages.
    batch_messages: int = Field(250, ge=1, le=5000)
    #: Messages larger than this are streamed in pieces, never held whole in memory.
    stream_threshold: ByteSize = 8_000_000
    #: Mailboxes copied in parallel (default: as the connection limits allow).
    workers: int | None = Field(None, ge=1, le=256)
    #: With a shared store (several hosts): how long a lock, claim or connection slot of a host lasts without
    #: renewal; a host that dies releases its mailboxes and slots within this time.
    lease_seconds: float = Field(30.0, ge=2, le=600)
    #: Delta passes also carry deletions (the final pass and the cut-over's last delta always do).
    carry_deletes_in_delta: bool = False
    #: Per mailbox, how many messages may stay not copied (refused by the central host, or that the source
    #: cannot export) when it becomes final-synced; more need ``run --pass final --force --reason`` (as
    #: Exchange's BadItemLimit).
    bad_item_limit: int = Field(0, ge=0, le=1_000_000)
    #: A pass other than the final reads a mailbox's rules, out-of-office, shared folders and delegates again
    #: only once this long has passed since a sync last read them in full (0: every pass). The final pass always
    #: reads them, and so does ``sync --settings``: the central host's copy acts only once mail arrives there.
    settings_interval_hours: float = Field(12.0, ge=0, le=24 * 90)


class NameServer(Strict):
    """A DNS server: an IP address (and port, 53 unless a lab says otherwise)."""

    address: HostName
    port: Port = 53
    #: For authoritative servers: the primary, where RFC 2136 updates go (else the first listed).
    primary: bool = False


class TsigKey(Strict):
    name: str
    algorithm: Literal["hmac-sha256", "hmac-sha384", "hmac-sha512", "hmac-sha1"] = "hmac-sha256"
    secret: SecretRefStr


class DnsRecords(Strict):
    """What a ministry domain publishes once its mail has moved. Under ``dns.targets`` for every domain; under
    ``dns.domains.<domain>`` only the fields where one ministry differs."""

    #: MX records as "preference host", e.g. ["10 mx1.mail.gov.bz", "20 mx2.mail.gov.bz"].
    mx: list[str] | None = None
    #: The include that authorises the central host to send for a domain, e.g. "_spf.mail.gov.bz".
    spf_include: str | None = None
    #: The whole SPF record to publish (default: "v=spf1 include:<spf_include> -all").
    spf: str | None = None
    #: The DMARC record to publish at _dmarc.<domain>, e.g. "v=DMARC1; p=quarantine; rua=mailto:...".
    dmarc: str | None = None
    #: The central signer's DKIM selector and its public key record (published at <selector>._domainkey).
    dkim_selector: str | None = None
    dkim_key: str | None = None
    #: Autodiscover: a CNAME autodiscover.<domain> to this host (and _autodiscover._tcp SRV to it, port 443).
    autodiscover: str | None = None
    #: RFC 6186/8314 client SRV records: _imaps._tcp (993) to imap_host; _submission._tcp (587) and
    #: _submissions._tcp (465) to submission_host.
    imap_host: str | None = None
    submission_host: str | None = None
    #: Optional: MTA-STS (_mta-sts TXT, e.g. "v=STSv1; id=20261130") and TLS-RPT (_smtp._tls TXT).
    mta_sts: str | None = None
    tls_rpt: str | None = None

    @field_validator("mx")
    @classmethod
    def _mx(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("give at least one MX host")
        for item in value:
            parts = item.split()
            if len(parts) != 2 or not parts[0].isdigit() or not 0 <= int(parts[0]) <= 65535 \
                    or not _HOST_RE.match(parts[1].rstrip(".")):
                raise ValueError(f"{item!r}: write an MX as 'preference host', e.g. '10 mx1.mail.gov.bz'")
        return value


class DnsSection(Strict):
    """The DNS cut-over: where the ministry zones are served, how updates are signed, what to publish."""

    #: The authoritative servers of the ministry zones; updates go to the primary, every one is watched.
    nameservers: list[NameServer] = Field(min_length=1)
    #: The TSIG key that signs updates and zone transfers (needed for prepare, cutover and rollback).
    tsig: TsigKey | None = None
    #: Recursive resolvers to look through (delegation, SPF includes) and to watch for propagation.
    resolvers: list[NameServer] = []
    #: Where the delegation of the ministry zones is looked up, for labs and split-horizon networks whose
    #: resolvers do not see it: the parent zone's servers, or root servers (root hints). Empty: through the
    #: resolvers.
    parent_servers: list[NameServer] = []
    #: What every domain publishes after cut-over.
    targets: DnsRecords
    #: Per-domain differences from ``targets``.
    domains: dict[str, DnsRecords] = {}
    #: The TTL `dns prepare` lowers every RRset that will change to, ahead of the switch.
    cutover_ttl: int = Field(300, ge=1, le=86400)
    #: How long the cut-over waits for every authoritative server to serve the change, in seconds.
    propagation_timeout: float = Field(600, gt=0, le=86400)
    #: Labs and demos only: wait at most this many seconds for an old TTL to run out (unset: the whole TTL).
    max_ttl_wait: float | None = Field(None, ge=0)
    #: How long a cut-over must have held before `dns settle` raises its TTLs again (seconds; default 3 days).
    settle_after: float = Field(259200, ge=0, le=31536000)

    @model_validator(mode="after")
    def _mx_somewhere(self) -> DnsSection:
        if not self.targets.mx:
            raise ValueError("dns.targets.mx: give the central host's MX records, e.g. ['10 mx1.mail.gov.bz']")
        return self

    def records_for(self, domain: str) -> DnsRecords:
        """The targets with this domain's overrides applied."""
        override = self.domains.get(domain)
        if override is None:
            return self.targets
        return self.targets.model_copy(update=override.model_dump(exclude_none=True))

    @property
    def primary(self) -> NameServer:
        return next((ns for ns in self.nameservers if ns.primary), self.nameservers[0])


class SipSection(Strict):
    """The hosted VOIP platform as its phones reach it, for ``govmigrate sip check`` and the cut-over's phone step."""

    #: The SIP domain: the realm and the domain of every address of record; resolved per RFC 3263 (NAPTR,
    #: then SRV, then A/AAAA on the standard ports) unless ``registrar`` names the host to check.
    domain: HostName
    #: One registrar host (name or address) to check instead of what the SIP domain's DNS says.
    registrar: HostName | None = None
    #: With ``registrar``: its port (default 5060, 5061 for TLS).
    port: Port | None = None
    #: The transports phones use; the checks try each (RFC 3263 targets of other transports are left out).
    transports: list[Literal["udp", "tcp", "tls"]] = Field(["udp", "tcp", "tls"], min_length=1)
    #: Recursive resolvers for the RFC 3263 lookups (default: dns.resolvers, else the system's).
    resolvers: list[NameServer] = []
    #: CA bundle to verify the platform's TLS certificate with (default: the system's).
    ca_file: str | None = None
    #: Certificates are verified (chain, RFC 5922 name) unless this is explicitly false.
    verify_certificate: bool = True
    #: SIP transactions in flight at once per registrar address (a wave of 300 phones must not flood it).
    concurrency: int = Field(10, ge=1, le=200)
    #: RFC 3261 timer T1 (UDP retransmissions start at T1 and double up to T2 = 4 s).
    timer_t1: float = Field(0.5, gt=0, le=10)
    #: How long one transaction waits for its final answer (RFC 3261 Timer F; default 64*T1 = 32 s).
    timeout: float = Field(32.0, gt=0, le=300)
    #: The longest Retry-After of a 503 the checks wait for (once) before they give up on that target.
    retry_after_limit: float = Field(10.0, ge=0, le=600)
    #: A TLS certificate expiring within this many days is a warning.
    expiry_warning_days: int = Field(30, ge=0, le=3650)
    #: The Expires of the test registrations (each is removed with Expires: 0 right after).
    register_expires: int = Field(60, ge=1, le=86400)


class PhonesPolicy(Strict):
    """How phones are read, planned and provisioned."""

    #: The region whose numbering plan national numbers follow (ISO 3166 code; BZ: Belize, +501).
    region: str = Field("BZ", min_length=2, max_length=2)
    #: Where a ministry's extensions that belong to no user go: its last wave, or a wave of their own.
    unlinked: Literal["last-wave", "phones-only"] = "last-wave"
    #: The SIP domain of the hosted platform (the Kamailio export's domain and ha1); default: sip.domain.
    sip_domain: str | None = None
    #: The key that seals the SIP passwords and voicemail PINs govmigrate makes (voip export --new-secrets) in the
    #: state store, as a secret reference (file:PATH, 0600, or env:NAME); at least 32 characters. Every host
    #: sharing a store needs the same key.
    secrets_key: SecretRefStr | None = None

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        import phonenumbers

        if value.upper() not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"{value!r} is not a region phonenumbers knows (an ISO 3166 code such as BZ)")
        return value.upper()


def _zone_name(value: str) -> str:
    zone_named(value)
    return value


class ProjectConfig(Strict):
    version: Literal[1]
    name: str = Field(min_length=1)
    #: The programme's time zone (IANA name): wave windows are wall-clock times in it and reports show every
    #: time in it. None: the migration host's own zone (reports say so).
    timezone: Annotated[str, AfterValidator(_zone_name)] | None = None
    central: CentralHost
    sources: list[Source] = Field(min_length=1)
    waves: WavePolicy = WavePolicy()
    sync: SyncTuning = SyncTuning()
    dns: DnsSection | None = None
    sip: SipSection | None = None
    phones: PhonesPolicy = PhonesPolicy()
    #: Where the state lives when several hosts share it (default: the workspace's state.db).
    state: StateStore | None = None

    def government_domains(self) -> tuple[str, ...]:
        """Every domain inside the government: the sources' and ``central.government_domains`` (each covering
        its subdomains)."""
        return tuple(sorted({d for s in self.sources for d in s.domains} | set(self.central.government_domains)))

    def dial_plan(self, source: Source) -> str:
        """The dial plan a source's extensions are numbered in."""
        return (source.pbx.dial_plan if source.pbx and source.pbx.dial_plan else source.id)


@dataclass
class Project:
    """A loaded project file: the validated config plus where it came from."""

    path: Path
    config: ProjectConfig
    warnings: list[Problem] = field(default_factory=list)
    located: Located | None = field(default=None, repr=False)

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    @property
    def zone(self) -> Zone:
        """The programme's time zone (the project file's ``timezone``, else this host's)."""
        return Zone.of(self.config.timezone)

    def source(self, source_id: str) -> Source:
        for source in self.config.sources:
            if source.id == source_id:
                return source
        known = ", ".join(s.id for s in self.config.sources)
        from migrate.core.errors import UsageError

        raise UsageError(f"no source {source_id!r} in {self.path.name} (sources: {known})")

    def resolve_path(self, value: str) -> Path:
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.base_dir / path


CLEARTEXT_IMAP = ("tls: none sends the login password and every message in clear text; use implicit or "
                  "starttls, or set allow_cleartext: true on this server to accept that")
CLEARTEXT_DAV = ("an http:// url sends the DAV login and every calendar and contact unprotected; use https://, "
                 "or set allow_cleartext: true on central.dav to accept that")
CLEARTEXT_EWS = ("an http:// url sends the {auth} login and every message unprotected; use https://, or set "
                 "allow_cleartext: true on this server to accept that")


def _semantic_checks(config: ProjectConfig, located: Located, filename: str, base_dir: Path) -> list[Problem]:
    problems: list[Problem] = []

    def at(path: tuple, message: str, severity: str = "error") -> None:
        problems.append(Problem(filename, located.line_of(path), dotted(path), message, severity))

    seen_ids: dict[str, int] = {}
    seen_domains: dict[str, str] = {}
    for i, source in enumerate(config.sources):
        if source.id in seen_ids:
            at(("sources", i, "id"), f"source id {source.id!r} is already used by sources[{seen_ids[source.id]}]")
        seen_ids.setdefault(source.id, i)
        for j, domain in enumerate(source.domains):
            if domain in seen_domains and seen_domains[domain] != source.id:
                at(("sources", i, "domains", j), f"domain {domain} is already listed by source {seen_domains[domain]}")
            seen_domains.setdefault(domain, source.id)
        users_path = Path(source.users).expanduser()
        users_path = users_path if users_path.is_absolute() else base_dir / users_path
        if not users_path.is_file():
            at(("sources", i, "users"), f"user list {users_path} does not exist")
        for j, pbx_input in enumerate(source.pbx.inputs if source.pbx else []):
            pbx_path = Path(pbx_input.path).expanduser()
            pbx_path = pbx_path if pbx_path.is_absolute() else base_dir / pbx_path
            if not pbx_path.is_file():
                at(("sources", i, "pbx", "inputs", j, "path"), f"PBX file {pbx_path} does not exist")
        server = source.server
        if server.ca_file:
            ca = Path(server.ca_file).expanduser()
            ca = ca if ca.is_absolute() else base_dir / ca
            if not ca.is_file():
                at(("sources", i, "server", "ca_file"), f"CA file {ca} does not exist")
        if isinstance(server, ImapServer) and server.tls == "none" and not server.allow_cleartext:
            at(("sources", i, "server", "tls"), CLEARTEXT_IMAP)
        if isinstance(server, EwsServer) and server.cleartext and not server.allow_cleartext:
            at(("sources", i, "server", "url"), CLEARTEXT_EWS.format(auth=server.auth))
    central = config.central.imap
    for path, ca_file in ((("central", "imap", "ca_file"), central.ca_file),
                          (("state", "ca_file"), config.state.ca_file if config.state else None)):
        if ca_file:
            ca = Path(ca_file).expanduser()
            ca = ca if ca.is_absolute() else base_dir / ca
            if not ca.is_file():
                at(path, f"CA file {ca} does not exist")
    if central.tls == "none" and not central.allow_cleartext:
        at(("central", "imap", "tls"), CLEARTEXT_IMAP)
    dav = config.central.dav
    if dav is not None:
        if dav.ca_file:
            ca = Path(dav.ca_file).expanduser()
            ca = ca if ca.is_absolute() else base_dir / ca
            if not ca.is_file():
                at(("central", "dav", "ca_file"), f"CA file {ca} does not exist")
        if dav.cleartext and not dav.allow_cleartext:
            at(("central", "dav", "url"), CLEARTEXT_DAV)
    if config.sip is not None and config.sip.ca_file:
        ca = Path(config.sip.ca_file).expanduser()
        ca = ca if ca.is_absolute() else base_dir / ca
        if not ca.is_file():
            at(("sip", "ca_file"), f"CA file {ca} does not exist")
    if config.dns is not None:
        for domain in config.dns.domains:
            if domain.lower() not in seen_domains:
                at(("dns", "domains", domain), f"{domain} is not a domain of any source")
        if sum(ns.primary for ns in config.dns.nameservers) > 1:
            at(("dns", "nameservers"), "only one nameserver can be the primary")
    pilot_source = config.waves.pilot.from_source
    if pilot_source and pilot_source not in seen_ids:
        at(("waves", "pilot", "from_source"), f"no source with id {pilot_source!r}")
    return problems


def secret_refs(config: ProjectConfig) -> list[tuple[tuple, str]]:
    """Every secret reference in the project file with its path, for checks and resolution."""
    refs: list[tuple[tuple, str]] = [(("central", "login", "password"), config.central.login.password)]
    if config.central.dav is not None:
        refs.append((("central", "dav", "password"), config.central.dav.password))
    for i, source in enumerate(config.sources):
        server = source.server
        if isinstance(server, ImapServer):
            if server.login.password:
                refs.append((("sources", i, "server", "login", "password"), server.login.password))
        else:
            refs.append((("sources", i, "server", "password"), server.password))
    if config.dns and config.dns.tsig:
        refs.append((("dns", "tsig", "secret"), config.dns.tsig.secret))
    if config.state and config.state.password:
        refs.append((("state", "password"), config.state.password))
    if config.phones.secrets_key:
        refs.append((("phones", "secrets_key"), config.phones.secrets_key))
    return refs


def check_secret_refs(project: Project, located: Located | None = None) -> list[Problem]:
    """Warnings for references that do not resolve yet (``check`` must not fail on an unset variable),
    errors for values that resolve but are too short to be passwords, and notes on non-ASCII ones."""
    problems = []
    filename = str(project.path)
    for path, ref in secret_refs(project.config):
        if ref == "prompt":
            continue
        line = located.line_of(path) if located else None
        problems.extend(_secret_problems(project, ref, filename, line, dotted(path),
                                         lambda value, path=path: _non_ascii(project.config, path, value)))
    return problems


def user_password_problems(project: Project, entry_ref: str, filename: str, line: int) -> list[Problem]:
    """The same checks for one user's own password (a reference in a user list)."""
    return _secret_problems(project, entry_ref, filename, line, "password",
                            lambda value: (_IMAP_NON_ASCII, "note"))


def _secret_problems(project: Project, ref: str, filename: str, line: int | None, field: str,
                     non_ascii) -> list[Problem]:
    from migrate.core.errors import SecretError
    from migrate.core.secrets import SecretTooShort, resolve

    try:
        value = resolve(SecretRef(ref), base_dir=project.base_dir, label=field).reveal()
    except SecretError as exc:
        return [Problem(filename, line, field, f"{exc.message.split(': ', 1)[-1]}",
                        "error" if isinstance(exc, SecretTooShort) else "warning")]
    if field == "phones.secrets_key" and len(value) < KEY_LENGTH:
        return [Problem(filename, line, field, f"the key is {len(value)} characters long; it needs at least "
                                               f"{KEY_LENGTH} (make one with: openssl rand -base64 32)")]
    if not value.isascii():
        return [Problem(filename, line, field, *non_ascii(value))]
    return []


#: The shortest key phones.secrets_key may name (migrate.core.sealed.MIN_KEY_LENGTH).
KEY_LENGTH = 32


_IMAP_NON_ASCII = ("holds non-ASCII characters, which IMAP LOGIN cannot carry: govmigrate logs in with "
                   "AUTHENTICATE PLAIN (UTF-8, RFC 4616) instead, so the server must offer AUTH=PLAIN (the "
                   "inventory's probe shows its capabilities)")


def _non_ascii(config: ProjectConfig, path: tuple, value: str) -> tuple[str, str]:
    """What a password with non-ASCII characters means for the server it is sent to: (message, severity)."""
    if path[0] == "sources" and isinstance(config.sources[path[1]].server, EwsServer):
        server = config.sources[path[1]].server
        if server.auth == "basic":
            try:
                value.encode("latin-1")
            except UnicodeEncodeError:
                return ("holds characters HTTP Basic authentication cannot carry (only Latin-1); the EWS login "
                        "would fail: use auth: ntlm or another password"), "error"
        return "holds non-ASCII characters; the EWS login sends them as the server expects", "note"
    return _IMAP_NON_ASCII, "note"


def load_project(path: Path) -> Project:
    """Load and validate a project file; raises :class:`ValidationFailed` listing every problem."""
    filename = str(path)
    located = load_yaml_file(path)
    problems = list(located.problems)
    if located.data is None and problems:
        raise ValidationFailed(filename, problems)
    if not isinstance(located.data, dict):
        raise ValidationFailed(filename, [Problem(filename, 1, "", "the project file must be a YAML mapping")])
    config = None
    try:
        config = ProjectConfig.model_validate(located.data)
    except ValidationError as exc:
        problems.extend(pydantic_problems(exc, located, filename))
    if config is not None:
        problems.extend(_semantic_checks(config, located, filename, path.parent))
    errors = [p for p in problems if p.severity == "error"]
    if errors or config is None:
        raise ValidationFailed(filename, sorted(problems, key=lambda p: (p.line or 0, p.field)))
    project = Project(path=path, config=config, located=located)
    project.warnings = check_secret_refs(project, located)
    return project
