"""Dovecot IMAP servers for the lab, each in its own temporary directory on a free 127.0.0.1 port.

Three shapes cover what the migration meets:

* ``modern_source``: a ministry server with ``/`` separator, SPECIAL-USE folders, a master user and quota;
* ``legacy_source``: laid out like many older (Courier-style) servers: ``.`` separator, everything under
  ``INBOX.``, no SPECIAL-USE, and a short capability list (no STATUS=SIZE, LIST-STATUS, CONDSTORE);
* ``central``: the central host on mdbox, with special-use Sent, Drafts, Trash, Junk and Archive
  auto-created, a master user and quota.

Every server also runs Pigeonhole (ManageSieve on ``sieve_port``, the sieve plugin for mail delivered over
LMTP on ``lmtp_port``; what Sieve sends goes to ``outbox/``) and the acl plugin with a shared namespace
(``shared/<owner>/<folder>``), as the central host is configured; a master user works with the rights of the
user it logs in as (``acl_user = %u``).

Every server serves TLS unless told otherwise: an implicit-TLS listener (``tls_port``) and STARTTLS on the
plain port, with a certificate for 127.0.0.1 and localhost from the session's lab CA (``ca_file``). Each
has its own master password, with the server's name in it, so a leaked one says where it came from.
"""

from __future__ import annotations

import imaplib
import os
import pwd
import shutil
import socket
import ssl
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from secrets import token_hex

from imapclient.imap_utf7 import encode as utf7_encode

from tests.lab.base import LOOPBACK, LabError, ServerProcess, free_port, lab_tempdir, wait_for_port, which
from tests.lab.certs import CertFiles, lab_ca
from tests.lab.corpus import CorpusMailbox

LEGACY_CAPABILITY = "IMAP4rev1 LITERAL+ SASL-IR LOGIN-REFERRALS ID ENABLE IDLE NAMESPACE UIDPLUS CHILDREN"


@dataclass
class DovecotConfig:
    name: str
    separator: str = "/"
    prefix: str = ""
    storage: str = "maildir"                       # maildir | mdbox
    master_user: str | None = "migrator"
    #: Default: one of this server's own, e.g. ``lab-health-master-1a2b3c4d``.
    master_password: str | None = None
    #: special-use attribute → folder name; declared in the config (auto-created when ``autocreate``).
    special_use: dict[str, str] = field(default_factory=dict)
    autocreate: bool = False
    #: Advertise only these capabilities after login (an older server's look).
    capability: str | None = None
    quota_bytes: int | None = 10 * 1024**3
    max_mail_size: int | None = None               # refuse APPEND of bigger messages (central host)
    #: True: a certificate from the lab CA; or these certificate files; False: no TLS at all. With TLS,
    #: the plain port offers STARTTLS and ``tls_port`` speaks implicit TLS.
    tls: CertFiles | bool = True
    #: Maildir layout override: "index" keeps names only in the index, so any character is allowed in a
    #: folder name (e.g. "/" on a "." server), as on some commercial servers.
    maildir_layout: str | None = None
    #: Answer failed logins at once: no failure delay (default 2 s) and no per-IP penalty that grows with
    #: every failure (up to 15 s). Keeps tests of refused logins quick.
    quick_auth_failures: bool = False
    #: SASL mechanisms offered; "login" alone means no AUTH=PLAIN (an older server's look).
    auth_mechanisms: str = "plain login"
    #: Pigeonhole: a ManageSieve listener (RFC 5804, STARTTLS with the server's certificate) and the sieve
    #: plugin for LMTP delivery (an LMTP listener of its own), so mail delivered is filed by the user's
    #: active script. Vacation replies and redirects leave through ``sendmail_path`` into ``outbox/``.
    sieve: bool = True
    #: The acl plugin (RFC 4314, vfile) and a shared namespace (``shared/<user>/...``) that lists the folders
    #: others shared with the user, as the central host is configured.
    acl: bool = True

    def __post_init__(self) -> None:
        if self.master_user and self.master_password is None:
            self.master_password = f"lab-{self.name}-master-{token_hex(4)}"


def modern_source(name: str = "health", **kw) -> DovecotConfig:
    return DovecotConfig(name=name, separator="/", prefix="",
                         special_use={"\\Sent": "Sent", "\\Drafts": "Drafts", "\\Trash": "Trash",
                                      "\\Junk": "Junk", "\\Archive": "Archive"}, **kw)


def legacy_source(name: str = "education", **kw) -> DovecotConfig:
    return DovecotConfig(name=name, separator=".", prefix="INBOX.", capability=LEGACY_CAPABILITY, **kw)


def central(name: str = "central", **kw) -> DovecotConfig:
    kw.setdefault("storage", "mdbox")
    return DovecotConfig(name=name, separator="/", prefix="", autocreate=True,
                         special_use={"\\Sent": "Sent", "\\Drafts": "Drafts", "\\Trash": "Trash",
                                      "\\Junk": "Junk", "\\Archive": "Archive"}, **kw)


class DovecotServer:
    """One running Dovecot. ``users`` maps login → password (passwd-file, re-read on change)."""

    def __init__(self, config: DovecotConfig, users: dict[str, str] | None = None) -> None:
        self.config = config
        self.users: dict[str, str] = dict(users or {})
        self.root = lab_tempdir(f"dovecot-{config.name}")
        self.port = free_port()
        #: The CA that issued this server's certificate (None without TLS or with certificates given).
        self.ca_file: Path | None = None
        self.certs: CertFiles | None = None
        if config.tls is True:
            ca = lab_ca()
            self.certs = ca.issue(f"dovecot-{config.name}", directory=self.root / "tls")
            self.ca_file = ca.ca_file
        elif config.tls:
            self.certs = config.tls
        self.tls_port = free_port() if self.certs else None
        #: ManageSieve (RFC 5804; STARTTLS where the server has TLS) and LMTP (RFC 2033), with ``sieve``.
        self.sieve_port = free_port() if config.sieve else None
        self.lmtp_port = free_port() if config.sieve else None
        self.process: ServerProcess | None = None
        self._mail_uid, self._mail_gid, self._internal, self._login_user = self._accounts()

    # -- configuration --------------------------------------------------------------------------------

    @staticmethod
    def _accounts() -> tuple[int, int, str, str]:
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            for account in ("dovecot", "dovenull"):
                try:
                    pwd.getpwnam(account)
                except KeyError:
                    raise LabError(f"system user {account} is missing; reinstall dovecot-core")
            return nobody.pw_uid, nobody.pw_gid, "dovecot", "dovenull"
        me = pwd.getpwuid(os.geteuid())
        return me.pw_uid, me.pw_gid, me.pw_name, me.pw_name

    @property
    def log_path(self) -> Path:
        return self.root / "dovecot.log"

    @property
    def conf_path(self) -> Path:
        return self.root / "dovecot.conf"

    def _mail_location(self) -> str:
        mail = self.root / "mail" / "%u"
        if self.config.storage == "mdbox":
            return f"mdbox:{mail}"
        if self.config.maildir_layout:
            return f"maildir:{mail}:LAYOUT={self.config.maildir_layout}"
        if self.config.separator == "/":
            # fs layout lets folder names contain dots; DIRNAME keeps them apart from cur/new/tmp.
            return f"maildir:{mail}:LAYOUT=fs:DIRNAME=mBoX-dAtA"
        return f"maildir:{mail}"

    def _render(self) -> str:
        c = self.config
        special = ""
        for attr, name in c.special_use.items():
            auto = "subscribe" if c.autocreate else "no"
            special += f'  mailbox "{name}" {{\n    special_use = {attr}\n    auto = {auto}\n  }}\n'
        passdbs = ""
        if c.master_user:
            passdbs += (f"passdb {{\n  driver = passwd-file\n  args = {self.root}/master-users\n"
                        "  master = yes\n  result_success = continue\n}\n")
        passdbs += f"passdb {{\n  driver = passwd-file\n  args = {self.root}/users\n}}\n"
        quota = ""
        mail_plugins: list[str] = []
        imap_plugins_list: list[str] = []
        if c.quota_bytes or c.max_mail_size:
            mail_plugins.append("quota")
            imap_plugins_list.append("imap_quota")
            rule = f"*:storage={c.quota_bytes}B" if c.quota_bytes else "*:storage=0"
            quota = ("plugin {\n  quota = count:User quota\n  quota_vsizes = yes\n"
                     f"  quota_rule = {rule}\n")
            if c.max_mail_size:
                quota += f"  quota_max_mail_size = {c.max_mail_size}\n"
            quota += "}\n"
        shared = ""
        if c.acl:
            mail_plugins.append("acl")
            imap_plugins_list.append("imap_acl")
            # Another user's folders, as the central host shows what was shared with a user: its own
            # mail location with that user's name (%%u is the owner, expanded per shared folder).
            other = self._mail_location().replace("%u", "%%u")
            shared = (f"namespace shared {{\n  type = shared\n  separator = {c.separator}\n"
                      f"  prefix = shared{c.separator}%%u{c.separator}\n  location = {other}\n"
                      "  subscriptions = no\n  list = children\n}\n"
                      f"plugin {{\n  acl = vfile\n  acl_shared_dict = file:{self.root}/shared/shared-mailboxes.db\n"
                      # A master user works as the user it logs in as (owner rights), as on production
                      # servers where the migration account must read and write every mailbox.
                      "  acl_user = %u\n"
                      # Ministry servers let users share with everyone ("anyone"), which a move must see.
                      "  acl_anyone = allow\n}\n")
        plugins = f"mail_plugins = $mail_plugins {' '.join(mail_plugins)}\n" if mail_plugins else ""
        imap_plugins = (f"  mail_plugins = $mail_plugins {' '.join(imap_plugins_list)}\n"
                        if imap_plugins_list else "")
        protocols = "imap"
        sieve = ""
        if c.sieve:
            protocols = "imap sieve lmtp"
            sieve = f"""plugin {{
  sieve = file:~/sieve;active=~/.dovecot.sieve
}}
sendmail_path = {self.root}/sendmail
protocol lmtp {{
  mail_plugins = $mail_plugins sieve
  postmaster_address = postmaster@lab.gov.bz
}}
service managesieve-login {{
  inet_listener sieve {{
    address = {LOOPBACK}
    port = {self.sieve_port}
  }}
  # The same mode as imap-login below (a login process serves many connections): ManageSieve sessions are
  # as many as IMAP sessions in a pass, and the lab's two login services should cost the same per session.
  process_min_avail = 2
  service_count = 0
}}
service lmtp {{
  inet_listener lmtp {{
    address = {LOOPBACK}
    port = {self.lmtp_port}
  }}
}}
"""
        capability = f"  imap_capability = {c.capability}\n" if c.capability else ""
        failure_delay = ""
        if c.quick_auth_failures:
            # anvil's penalty socket unusable (mode 0) is how Dovecot documents turning the penalty off.
            failure_delay = ("auth_failure_delay = 0 secs\n"
                             "service anvil {\n  unix_listener anvil-auth-penalty {\n    mode = 0\n  }\n}\n")
        tls = "ssl = no\n"
        tls_listener = "  inet_listener imaps {\n    port = 0\n  }\n"
        if self.certs:
            tls = (f"ssl = yes\nssl_cert = <{self.certs.cert}\nssl_key = <{self.certs.key}\n"
                   "ssl_min_protocol = TLSv1.2\n")
            tls_listener = (f"  inet_listener imaps {{\n    address = {LOOPBACK}\n    port = {self.tls_port}\n"
                            "    ssl = yes\n  }\n")
        return f"""# generated by the govmigrate test lab
base_dir = {self.root}/run
state_dir = {self.root}/state
instance_name = govlab-{c.name}-{self.port}
log_path = {self.log_path}
protocols = {protocols}
listen = {LOOPBACK}
{tls}disable_plaintext_auth = no
auth_mechanisms = {c.auth_mechanisms}
auth_master_user_separator = *
auth_cache_size = 0
{failure_delay}default_internal_user = {self._internal}
default_login_user = {self._login_user}
mail_uid = {self._mail_uid}
mail_gid = {self._mail_gid}
first_valid_uid = 1
first_valid_gid = 1
mail_location = {self._mail_location()}
mailbox_list_index = yes
{plugins}namespace inbox {{
  inbox = yes
  separator = {c.separator}
  prefix = {c.prefix}
{special}}}
{shared}{sieve}{passdbs}userdb {{
  driver = passwd-file
  args = {self.root}/users
  default_fields = home={self.root}/home/%u
}}
protocol imap {{
  mail_max_userip_connections = 500
{imap_plugins}{capability}}}
{quota}service imap-login {{
  inet_listener imap {{
    address = {LOOPBACK}
    port = {self.port}
  }}
{tls_listener}  process_min_avail = 2
  service_count = 0
}}
service imap {{
  process_limit = 1024
}}
service stats {{
  unix_listener stats-reader {{
    mode = 0666
  }}
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
"""

    def _write_users(self) -> None:
        lines = [f"{login}:{{PLAIN}}{password}::::::" for login, password in self.users.items()]
        path = self.root / "users"
        tmp = path.with_suffix(".tmp")
        tmp.write_text("\n".join(lines) + "\n")
        tmp.chmod(0o644)
        tmp.replace(path)

    # -- lifecycle ------------------------------------------------------------------------------------

    def start(self) -> DovecotServer:
        c = self.config
        binary = which("dovecot", "dovecot-imapd")
        for sub in ("run", "state", "mail", "home", "shared", "outbox"):
            (self.root / sub).mkdir(exist_ok=True)
        for sub in ("mail", "home", "shared", "outbox"):
            os.chown(self.root / sub, self._mail_uid, self._mail_gid)
        if c.sieve:
            self._write_sendmail()
        self._write_users()
        if c.master_user:
            (self.root / "master-users").write_text(f"{c.master_user}:{{PLAIN}}{c.master_password}\n")
        for attempt in range(3):
            self.conf_path.write_text(self._render())
            self.process = ServerProcess([binary, "-F", "-c", str(self.conf_path)], log=self.log_path,
                                         what=f"dovecot ({c.name})")
            try:
                self._wait_for_listeners()
                break
            except LabError as exc:
                self.process.stop()
                if attempt == 2 or "in use" not in str(exc):
                    raise
                # A port picked free was taken meanwhile (another test's client got it as its own port): the
                # server cannot listen there; it starts again on ports picked afresh.
                self.port = free_port()
                self.tls_port = free_port() if self.certs else None
                self.sieve_port = free_port() if c.sieve else None
                self.lmtp_port = free_port() if c.sieve else None
        return self

    def _wait_for_listeners(self) -> None:
        c = self.config
        wait_for_port(self.port, proc=self.process.proc, log=self.log_path, what=f"dovecot ({c.name})",
                      greeting=b"* OK")
        if self.tls_port:
            wait_for_port(self.tls_port, proc=self.process.proc, log=self.log_path, what=f"dovecot ({c.name}) TLS")
        if self.sieve_port:
            wait_for_port(self.sieve_port, proc=self.process.proc, log=self.log_path,
                          what=f"dovecot ({c.name}) ManageSieve", greeting=b'"IMPLEMENTATION"')
            wait_for_port(self.lmtp_port, proc=self.process.proc, log=self.log_path,
                          what=f"dovecot ({c.name}) LMTP", greeting=b"220 ")

    def _write_sendmail(self) -> None:
        """What Pigeonhole sends (vacation replies, redirects) lands in ``outbox/`` as one file each: the
        command line's arguments (sender and recipients) on the first line, then the message."""
        script = self.root / "sendmail"
        script.write_text('#!/bin/sh\nout="$(dirname "$0")/outbox/$(date +%s%N)-$$.eml"\n'
                          'printf \'%s\\n\' "$*" > "$out.tmp"\ncat >> "$out.tmp"\nmv "$out.tmp" "$out"\n')
        script.chmod(0o755)

    def stop(self) -> None:
        if self.process:
            self.process.stop()
            self.process = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> DovecotServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    # -- helpers for tests --------------------------------------------------------------------------

    def add_user(self, login: str, password: str) -> None:
        self.users[login] = password
        self._write_users()

    def server_name(self, path: tuple[str, ...]) -> str:
        if path == ("INBOX",):
            return "INBOX"
        return self.config.prefix + self.config.separator.join(path)

    def connect(self, login: str, *, as_master: bool = True) -> imaplib.IMAP4:
        """A plain imaplib session for this user: the lab's own independent view of the server."""
        conn = imaplib.IMAP4(LOOPBACK, self.port, timeout=60)
        if as_master and self.config.master_user:
            conn.login(f"{login}*{self.config.master_user}", self.config.master_password)
        else:
            conn.login(login, self.users[login])
        return conn

    def doveadm(self, *args: str) -> str:
        binary = which("doveadm", "dovecot-core")
        result = subprocess.run([binary, "-c", str(self.conf_path), *args], capture_output=True, text=True,
                                timeout=60)
        if result.returncode != 0:
            raise LabError(f"doveadm {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    def deliver_local(self, login: str, raw: bytes, folder: str = "INBOX") -> None:
        """Deliver one message as a local mail system does: through Dovecot's delivery agent (dovecot-lda), into
        ``folder`` of ``login``'s mailbox (:meth:`deliver` goes over LMTP, as the MTA in front of a server does)."""
        binary = "/usr/lib/dovecot/dovecot-lda"  # Debian installs it there, off PATH
        if not Path(binary).exists():
            raise LabError("dovecot-lda (Dovecot's delivery agent, package dovecot-core) is missing")
        result = subprocess.run([binary, "-c", str(self.conf_path), "-d", login, "-m", folder,
                                 "-f", "sender@example.org"], input=raw, capture_output=True, timeout=60)
        if result.returncode != 0:
            raise LabError(f"dovecot-lda could not deliver to {login}: {result.stderr.decode(errors='replace')}")

    def kick(self, login: str) -> int:
        """Disconnect every session of a user (the server sends BYE): a transient fault. Returns how many
        sessions were kicked (doveadm exits non-zero when there were none)."""
        binary = which("doveadm", "dovecot-core")
        result = subprocess.run([binary, "-c", str(self.conf_path), "kick", login], capture_output=True, text=True,
                                timeout=60)
        if result.returncode not in (0, 68):  # 68: no such user connected
            raise LabError(f"doveadm kick {login} failed: {result.stderr.strip()}")
        return 0 if result.returncode else max(1, result.stdout.count("\n"))

    # -- Sieve, LMTP and ACLs, seen independently of govmigrate's code ------------------------------------

    def deliver(self, recipient: str, raw: bytes, *, sender: str = "someone@outside.example") -> None:
        """Deliver one message over LMTP, as the MTA in front of the server does: the recipient's active
        Sieve script files it."""
        import smtplib

        with smtplib.LMTP(LOOPBACK, self.lmtp_port, timeout=60) as lmtp:
            refused = lmtp.sendmail(sender, [recipient], raw)
        if refused:
            raise LabError(f"LMTP refused {recipient}: {refused}")

    def sent(self) -> list[tuple[str, bytes]]:
        """What Pigeonhole sent out (vacation replies, redirects), oldest first: (sendmail's arguments, message)."""
        out = []
        for path in sorted((self.root / "outbox").glob("*.eml")):
            args, _, message = path.read_bytes().partition(b"\n")
            out.append((args.decode(errors="replace"), message))
        return out

    def _sieve_dir(self, login: str) -> Path:
        return self.root / "home" / login / "sieve"

    def put_script(self, login: str, name: str, text: str, *, active: bool = False) -> None:
        """Write a Sieve script where Pigeonhole keeps the user's scripts (and make it the active one)."""
        home = self.root / "home" / login
        directory = self._sieve_dir(login)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"{name}.sieve").write_text(text)
        for path in (home, directory, directory / f"{name}.sieve"):
            os.chown(path, self._mail_uid, self._mail_gid)
        if active:
            link = home / ".dovecot.sieve"
            link.unlink(missing_ok=True)
            link.symlink_to(directory / f"{name}.sieve")
            os.lchown(link, self._mail_uid, self._mail_gid)

    def scripts(self, login: str) -> tuple[str | None, dict[str, str]]:
        """(the active script's name, every script's text by name), read from disk."""
        directory = self._sieve_dir(login)
        texts = {p.stem: p.read_text() for p in directory.glob("*.sieve")} if directory.is_dir() else {}
        link = self.root / "home" / login / ".dovecot.sieve"
        active = Path(os.readlink(link)).stem if link.is_symlink() else None
        return active, texts

    def getacl(self, login: str, folder: str) -> dict[str, str]:
        """Identifier → rights of a folder, as GETACL shows them to its owner."""
        conn = self.connect(login)
        try:
            typ, data = conn._simple_command("GETACL", _quote(folder).decode())
            if typ != "OK":
                raise LabError(f"GETACL {folder}: {data}")
            words = []
            for line in conn.untagged_responses.pop("ACL", []):
                words += _acl_words(line)
            return dict(zip(words[1::2], words[2::2], strict=False))
        finally:
            conn.logout()

    def setacl(self, login: str, folder: str, identifier: str, rights: str) -> None:
        """Set (or with empty ``rights`` remove) an identifier's rights on a folder, as its owner."""
        conn = self.connect(login)
        try:
            args = (_quote(folder).decode(), _qstr(identifier).decode())
            # No rights: the entry is removed (DELETEACL), as a mail client does when sharing is stopped.
            typ, data = conn._simple_command("SETACL", *args, rights) if rights else \
                conn._simple_command("DELETEACL", *args)
            if typ != "OK":
                raise LabError(f"SETACL {folder} {identifier}: {data}")
        finally:
            conn.logout()

    def folder_dir(self, login: str, path: tuple[str, ...]) -> Path:
        """The on-disk directory of a maildir folder (to break it on purpose)."""
        base = self.root / "mail" / login
        if self.config.storage != "maildir":
            raise LabError("folder_dir is for maildir storage")
        if path == ("INBOX",):
            return base if self.config.separator == "." else base / "INBOX"
        if self.config.separator == "/":
            return base.joinpath(*path)
        return base / ("." + ".".join(path))

    # -- corpus ---------------------------------------------------------------------------------------

    def load(self, mailboxes: list[CorpusMailbox]) -> None:
        """Create users, folders and subscriptions, and APPEND every message with flags and date."""
        for box in mailboxes:
            self.users[box.login] = box.password
        self._write_users()
        for box in mailboxes:
            load_mailbox(self, box)


def _quote(name: str) -> bytes:
    encoded = utf7_encode(name)
    return b'"' + encoded.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def _imap_date(when) -> bytes:
    return when.strftime('"%d-%b-%Y %H:%M:%S %z"').encode()


def load_mailbox(server: DovecotServer, box: CorpusMailbox) -> None:
    """Pipelined APPENDs with LITERAL+ over a raw socket: fast, and independent of govmigrate's code."""
    sock = socket.create_connection((LOOPBACK, server.port), timeout=120)
    reader = sock.makefile("rb")
    tag_no = 0

    def send(line: bytes) -> str:
        nonlocal tag_no
        tag_no += 1
        tag = f"L{tag_no}"
        sock.sendall(tag.encode() + b" " + line + b"\r\n")
        return tag

    def wait(tag: str) -> bytes:
        while True:
            line = reader.readline()
            if not line:
                raise LabError(f"dovecot closed the connection while loading {box.login}")
            if line.startswith(tag.encode() + b" "):
                if not line.split(b" ", 2)[1] == b"OK":
                    raise LabError(f"loading {box.login}: {line.decode(errors='replace').strip()}")
                return line
            if line.rstrip().endswith(b"}"):  # a literal in an untagged response: skip it
                size = int(line.rstrip()[line.rstrip().rindex(b"{") + 1:-1])
                reader.read(size)

    reader.readline()  # greeting
    user = f"{box.login}*{server.config.master_user}" if server.config.master_user else box.login
    password = server.config.master_password if server.config.master_user else box.password
    wait(send(b"LOGIN " + _qstr(user) + b" " + _qstr(password)))
    tags = []
    for folder in box.folders:
        name = server.server_name(folder.path)
        if not folder.is_inbox:
            # Parents first: some servers refuse to create a child under a missing parent.
            for depth in range(1, len(folder.path)):
                tags.append(send(b"CREATE " + _quote(server.server_name(folder.path[:depth]))))
            tags.append(send(b"CREATE " + _quote(name)))
        if folder.subscribed:
            tags.append(send(b"SUBSCRIBE " + _quote(name)))
    for tag in tags:
        _wait_any(reader, tag)
    for folder in box.folders:
        name = _quote(server.server_name(folder.path))
        pending = []
        for msg in folder.messages:
            flags = " ".join(msg.flags).encode()
            head = b"APPEND " + name + b" (" + flags + b") " + _imap_date(msg.internaldate)
            pending.append(send(head + b" {" + str(len(msg.raw)).encode() + b"+}\r\n" + msg.raw))
            if len(pending) >= 64:
                for tag in pending:
                    wait(tag)
                pending = []
        for tag in pending:
            wait(tag)
    wait(send(b"LOGOUT"))
    sock.close()


def _wait_any(reader, tag: str) -> None:
    """Wait for a tagged reply, accepting NO (CREATE of a folder that exists is fine)."""
    while True:
        line = reader.readline()
        if not line:
            raise LabError("dovecot closed the connection")
        if line.startswith(tag.encode() + b" "):
            if line.split(b" ", 2)[1] == b"BAD":
                raise LabError(line.decode(errors="replace"))
            return


def _acl_words(line: bytes) -> list[str]:
    """The words of an untagged ACL reply (the folder, then identifier and rights pairs), quotes undone."""
    import shlex

    return shlex.split(line.decode("utf-8", "replace"), posix=True)


def _qstr(text: str) -> bytes:
    return b'"' + text.encode().replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def tls_client_context(ca_file: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca_file))
    return ctx
