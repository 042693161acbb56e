"""A whole lab programme: two Dovecot ministry sources of different layouts, the central host, their corpora,
and a govmigrate workspace pointed at them. Used by the pytest fixtures and by ``make demo``.

Workspaces reach every lab server over verified TLS: implicit TLS on the server's TLS port, checked against
the lab CA, whose certificate is copied into the workspace as ``lab-ca.crt``."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from secrets import token_hex

import yaml

from tests.lab import corpus
from tests.lab.certs import lab_ca
from tests.lab.dovecot import DovecotServer, central, legacy_source, modern_source

#: Where a workspace keeps the lab CA's certificate (project files name it relative to themselves).
CA_FILE = "lab-ca.crt"

MODERN = "health"
LEGACY = "education"
MODERN_DOMAIN = "health.gov.bz"
LEGACY_DOMAIN = "education.gov.bz"


@dataclass
class LabSource:
    id: str
    ministry: str
    domain: str
    server: DovecotServer
    mailboxes: list[corpus.CorpusMailbox]

    def mailbox(self, email: str) -> corpus.CorpusMailbox:
        for box in self.mailboxes:
            if box.email == email:
                return box
        raise KeyError(email)


@dataclass
class Lab:
    sources: dict[str, LabSource]
    central: DovecotServer
    extra: list[object] = field(default_factory=list)

    def stop(self) -> None:
        for source in self.sources.values():
            source.server.cleanup()
        self.central.cleanup()
        for other in self.extra:
            stop = getattr(other, "cleanup", None) or getattr(other, "stop", None)
            if stop:
                stop()


def make_corpora(seed: str = "govlab", users: int = 3, messages: int = 40) -> dict[str, list[corpus.CorpusMailbox]]:
    return {
        MODERN: corpus.ministry(seed=seed, domain=MODERN_DOMAIN, users=users, layout="modern",
                                messages=messages, login_style="local"),
        LEGACY: corpus.ministry(seed=seed, domain=LEGACY_DOMAIN, users=users, layout="legacy",
                                messages=messages, login_style="email"),
    }


def start_sources(corpora: dict[str, list[corpus.CorpusMailbox]]) -> dict[str, LabSource]:
    modern = DovecotServer(modern_source(MODERN)).start()
    legacy = DovecotServer(legacy_source(LEGACY)).start()
    try:
        modern.load(corpora[MODERN])
        legacy.load(corpora[LEGACY])
    except BaseException:
        modern.cleanup()
        legacy.cleanup()
        raise
    return {
        MODERN: LabSource(MODERN, "Ministry of Health", MODERN_DOMAIN, modern, corpora[MODERN]),
        LEGACY: LabSource(LEGACY, "Ministry of Education", LEGACY_DOMAIN, legacy, corpora[LEGACY]),
    }


def start_central(**kw) -> DovecotServer:
    return DovecotServer(central(**kw)).start()


def start_lab(seed: str = "govlab", users: int = 3, messages: int = 40) -> Lab:
    sources = start_sources(make_corpora(seed, users, messages))
    try:
        return Lab(sources, start_central())
    except BaseException:
        for source in sources.values():
            source.server.cleanup()
        raise


def small_lab(ws: Path, *, seed: str, users: int = 1, messages: int = 30, domain: str = MODERN_DOMAIN,
              layout: str = "modern", boxes: list[corpus.CorpusMailbox] | None = None, source_kw: dict | None = None,
              central_kw: dict | None = None) -> tuple[Lab, list[corpus.CorpusMailbox]]:
    """One private source (modern or legacy layout) and a private central host, with a workspace at ``ws``:
    for tests that change the source or need a special central host."""
    if boxes is None:
        boxes = corpus.ministry(seed=seed, domain=domain, users=users, messages=messages, layout=layout,
                                login_style="local" if layout == "modern" else "email")
    source_id = MODERN if layout == "modern" else LEGACY
    make = modern_source if layout == "modern" else legacy_source
    source = DovecotServer(make(source_id, **(source_kw or {}))).start()
    try:
        source.load(boxes)
        center = start_central(**(central_kw or {}))
    except BaseException:
        source.cleanup()
        raise
    ministry = "Ministry of Health" if layout == "modern" else "Ministry of Education"
    lab = Lab({source_id: LabSource(source_id, ministry, domain, source, boxes)}, center)
    write_workspace(ws, lab)
    return lab, boxes


def ews_lab(ws: Path, boxes: list[corpus.CorpusMailbox], *, source_id: str = "finance",
            ministry: str = "Ministry of Finance", domain: str = "finance.gov.bz", waves: dict | None = None,
            project_auth: str | None = None, **responder_kw) -> Lab:
    """An Exchange ministry (the EWS responder serving ``boxes``) and a central host with their accounts,
    with a workspace at ``ws`` whose only source is that Exchange server (impersonation; NTLM, as on-premises
    Exchange is set up by default, unless ``auth`` says what the responder offers and ``project_auth`` what
    the project file names)."""
    from tests.lab.ews import EwsResponder

    ca = lab_ca()
    responder_kw.setdefault("tls", ca.issue(f"ews-{source_id}-{token_hex(4)}"))
    responder_kw.setdefault("service_password", f"lab-ews-{source_id}-{token_hex(4)}")
    responder_kw.setdefault("auth", ("negotiate", "ntlm"))       # IIS's Windows authentication, as installed
    responder = EwsResponder(boxes, **responder_kw).start()
    try:
        lab = Lab({}, start_central(), extra=[responder])
    except BaseException:
        responder.cleanup()
        raise
    for box in boxes:
        lab.central.add_user(box.email, f"central-{box.password}")
    write_workspace(ws, lab, sources=[])
    (ws / "users" / f"{source_id}.csv").write_text(corpus.user_list_csv(boxes))
    doc = yaml.safe_load((ws / "migration.yaml").read_text())
    auth = project_auth or ("ntlm" if "ntlm" in responder.auth.offered else "basic")
    server = {"type": "ews", "url": responder.url, "auth": auth, "access": "impersonation",
              "user": responder.service_user,
              "password": _secret_file(ws, f"{source_id}-ews", responder.service_password), "timeout": 30}
    if responder.tls:
        server["ca_file"] = _copy_ca(ws, ca.ca_file)
    else:
        server["allow_cleartext"] = True
    doc["sources"] = [{"id": source_id, "ministry": ministry, "domains": [domain], "server": server,
                       "users": f"users/{source_id}.csv", "connections": 2}]
    if waves:
        doc["waves"] = waves
    (ws / "migration.yaml").write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    return lab


def _secret_file(ws: Path, name: str, value: str) -> str:
    secrets = ws / "secrets"
    secrets.mkdir(exist_ok=True)
    secrets.chmod(0o700)
    path = secrets / name
    path.write_text(value + "\n")
    path.chmod(0o600)
    return f"file:secrets/{name}"


def _copy_ca(ws: Path, ca_file: Path) -> str:
    ws.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ca_file, ws / CA_FILE)
    return CA_FILE


def tls_settings(ws: Path, server: DovecotServer) -> dict:
    """How a project file reaches this lab Dovecot: implicit TLS verified with the lab CA (copied into the
    workspace); a server started without TLS is reached in clear text, opted into explicitly."""
    if server.tls_port and server.ca_file:
        return {"port": server.tls_port, "tls": "implicit", "ca_file": _copy_ca(ws, server.ca_file)}
    return {"port": server.port, "tls": "none", "allow_cleartext": True}


def source_entry(ws: Path, src: LabSource, **overrides) -> dict:
    server = src.server
    cfg = server.config
    entry = {
        "id": src.id,
        "ministry": src.ministry,
        "domains": [src.domain],
        "server": {
            "type": "imap",
            "host": "127.0.0.1",
            **tls_settings(ws, server),
            "timeout": 30,
            "login": {"method": "master_user", "user": cfg.master_user,
                      "password": _secret_file(ws, f"{src.id}-master", cfg.master_password)},
            **({"sieve_port": server.sieve_port} if server.sieve_port else {}),
        },
        "users": f"users/{src.id}.csv",
        "connections": 4,
    }
    entry.update(overrides)
    return entry


#: The environment variable the project file's ``state.password`` names when a workspace uses the lab's PostgreSQL.
STATE_PASSWORD_ENV = "GOVLAB_STATE_PASSWORD"
#: The PostgreSQL database the workspaces made now use (set for a test module that runs on both engines).
_engine_state: list[str | None] = [None]


def state_url() -> str | None:
    return _engine_state[0]


@contextmanager
def engine_state(url: str | None) -> Iterator[None]:
    """Workspaces made inside use ``url`` (a database of the lab's PostgreSQL) as their state store."""
    before, _engine_state[0] = _engine_state[0], url
    try:
        yield
    finally:
        _engine_state[0] = before


def state_section(url: str) -> dict:
    """The project file's ``state:`` for a lab database URL (``postgresql://USER@HOST:PORT/NAME``)."""
    user, address = url.split("://", 1)[1].split("@", 1)
    return {"url": f"postgresql://{address}", "user": user, "password": f"env:{STATE_PASSWORD_ENV}"}


def write_workspace(ws: Path, lab: Lab, *, sources: list[str] | None = None, extra_sources: list[dict] = (),
                    central_overrides: dict | None = None, waves: dict | None = None,
                    state_url: str | None = None) -> Path:
    """A workspace whose migration.yaml points at the lab; returns the project file's path. ``state_url``: its
    state store is that PostgreSQL database (the password from ``$GOVLAB_STATE_PASSWORD``), not ``state.db``."""
    ws.mkdir(parents=True, exist_ok=True)
    for sub in ("plans", "reports", "users"):
        (ws / sub).mkdir(exist_ok=True)
    chosen = [lab.sources[s] for s in (sources or list(lab.sources))]
    for src in chosen:
        (ws / "users" / f"{src.id}.csv").write_text(corpus.user_list_csv(src.mailboxes))
    c = lab.central
    # The central mail team provisions the accounts; the migration fills them.
    for src in chosen:
        for box in src.mailboxes:
            if box.email not in c.users:
                c.add_user(box.email, f"central-{box.password}")
    doc = {
        "version": 1,
        "name": "govmigrate lab programme",
        "central": {
            "imap": {"host": "127.0.0.1", **tls_settings(ws, c), "timeout": 30},
            "login": {"method": "master_user", "user": c.config.master_user,
                      "password": _secret_file(ws, "central-master", c.config.master_password)},
            "connections": 16,
            "sieve_port": c.sieve_port,
            **(central_overrides or {}),
        },
        "sources": [source_entry(ws, s) for s in chosen] + list(extra_sources),
    }
    if waves:
        doc["waves"] = waves
    state_url = state_url or _engine_state[0]
    if state_url:
        doc["state"] = state_section(state_url)
    path = ws / "migration.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    from migrate.core.store import open_store

    if not state_url and not (ws / "state.db").exists():
        open_store(ws / "state.db", create=True).close()
    return path


def workspace_store(ws: Path):
    """The workspace's state store, whichever engine its project file names (SQLite's state.db, or PostgreSQL)."""
    from migrate.core.workspace import open_workspace

    workspace = open_workspace(ws)
    return workspace.open_store(workspace.load_project())


def lab_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("GOVMIGRATE_WORKSPACE", None)
    return env


def _set_section(ws: Path, section: str, settings: dict) -> None:
    """Set keys of one section of the workspace's project file (None removes a key)."""
    doc = yaml.safe_load((ws / "migration.yaml").read_text())
    doc[section] = {k: v for k, v in {**(doc.get(section) or {}), **settings}.items() if v is not None}
    (ws / "migration.yaml").write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))


#: The key a lab workspace's phones.secrets_key names (tests that need none pass secrets_key=None).
PHONES_KEY = "lab-phones-key-0123456789abcdefghijklmnop"


def set_phones(ws: Path, **settings) -> None:
    """Set keys of the project file's ``phones:`` section (e.g. ``sip_domain``). ``secrets_key`` names a key in
    ws/secrets unless the caller gives one (None: no key)."""
    if "secrets_key" not in settings:
        settings["secrets_key"] = _secret_file(ws, "phones.key", PHONES_KEY)
    _set_section(ws, "phones", settings)


def set_sip(ws: Path, **settings) -> None:
    """Set keys of the project file's ``sip:`` section (None removes one)."""
    _set_section(ws, "sip", settings)


def add_dns(ws: Path, dns_lab) -> None:
    """Point the workspace's project file at a DNS lab (tests/lab/bind.py): its `dns:` section, and the TSIG
    secret in ws/secrets."""
    doc = yaml.safe_load((ws / "migration.yaml").read_text())
    doc["dns"] = dns_lab.dns_section(ws)
    (ws / "migration.yaml").write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))


def provisioned_phones(ws: Path, extensions: list, sip: dict) -> tuple[Path, object]:
    """A workspace with no mail at all, only these extensions (``migrate.voip.model.Extension`` with secrets)
    provisioned, their secrets kept sealed in the store as a ``voip export --new-secrets`` leaves them, and the
    project file's ``sip:`` and ``phones:`` sections. For the SIP checks' benchmark and limit tests; returns
    (project file, open store)."""
    from migrate.core import lifecycle
    from migrate.core.sealed import Sealer
    from migrate.core.secrets import Secret
    from migrate.core.store import open_store
    from migrate.voip.kept import sealed_row
    from tests.lab.base import LOOPBACK, free_port

    (ws / "users").mkdir(parents=True)
    (ws / "users" / "health.csv").write_text("email,login,display_name\n")
    unused = _secret_file(ws, "unused", "never-contacted-here")
    login = {"method": "master_user", "user": "migrator", "password": unused}
    doc = {"version": 1, "name": "phones only",
           "central": {"imap": {"host": LOOPBACK, "port": free_port(), "tls": "implicit"}, "login": login},
           "sources": [{"id": "health", "ministry": "Ministry of Health", "domains": ["health.gov.bz"],
                        "server": {"type": "imap", "host": LOOPBACK, "port": free_port(), "tls": "implicit",
                                   "login": login},
                        "users": "users/health.csv"}],
           "sip": sip, "phones": {"secrets_key": _secret_file(ws, "phones.key", PHONES_KEY)}}
    (ws / "migration.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    sealer = Sealer(Secret(PHONES_KEY, remember=False))
    store = open_store(ws / "state.db", create=True)
    store.upsert_source("health", "Ministry of Health", "imap", ["health.gov.bz"])
    kept = []
    for ext in extensions:
        ext_id = store.upsert_extension(ext, seen_at="2026-11-30T00:00:00Z")
        store.set_extension_state(ext_id, lifecycle.PROVISIONED, "provisioned by the lab")
        kept.append(sealed_row(sealer, ext.key, 1, ext.secret, None))
    store.keep_pending_secrets(kept)
    store.promote_secrets([e.key for e in extensions])
    return ws / "migration.yaml", store


def add_dav(ws: Path, radicale, **overrides) -> None:
    """Point the workspace's ``central.dav`` at a Radicale lab server (tests/lab/radicale.py): its url, the
    migration account, its password as a file: reference, and the lab CA."""
    doc = yaml.safe_load((ws / "migration.yaml").read_text())
    dav = {"url": radicale.url, "user": radicale.user,
           "password": _secret_file(ws, "central-dav", radicale.password)}
    if radicale.tls:
        dav["ca_file"] = _copy_ca(ws, radicale.ca_file)
    dav.update(overrides)
    doc["central"]["dav"] = {k: v for k, v in dav.items() if v is not None}
    (ws / "migration.yaml").write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
