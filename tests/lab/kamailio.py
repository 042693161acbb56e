"""Kamailio for the lab: the hosted VOIP platform's registrar, as phones and ``govmigrate sip check`` reach it.

One :class:`KamailioServer` is one ``kamailio`` (Debian's package) in the foreground as our child, with its own
temporary directory and generated configuration:

* **Addresses.** Each server takes a loopback /24 of its own under 127.56.0.0/16 (e.g. 127.56.7) and listens on
  the standard SIP ports there, because RFC 3263 falls back from NAPTR and SRV to an A record with port 5060
  (UDP, TCP) or 5061 (TLS), and a lab that only had random ports could not test that fall-back end to end:

  - ``.1`` the registrar: UDP and TCP on 5060, TLS on 5061 with a certificate from the lab CA for the SIP
    domain, ``sip.<domain>``, ``localhost`` and the address;
    and UDP and TCP on 5070 too: a second registrar of the platform that a redirect can point to (requests
    there are never redirected);
  - ``.2`` TLS on 5061 with a certificate from the lab CA issued for another name (``wrong.example.net``);
  - ``.3`` TLS on 5061 with an expired certificate from the lab CA for the right names.

  Linux routes all of 127.0.0.0/8 to ``lo``, and Kamailio (unlike named) binds an address that is not
  configured on an interface, so no ``ip addr add`` and no root are needed. A /24 is taken only when an
  abstract socket named after it could be bound (one per network namespace, released when its holder dies)
  and its ports are free, so several labs run at once. :meth:`KamailioServer.dns_records` gives the NAPTR, SRV
  and A records that publish it in the DNS lab (tests.lab.bind), so resolution is real end to end.

* **Subscribers** come from db_text tables (``db_mode`` 1: Kamailio checks a table file's modification time on
  every query and reloads it when it changed). :meth:`KamailioServer.load` copies the ``subscriber`` and
  ``dbaliases`` tables of a directory written by ``migrate.voip.export.write_kamailio`` into the server's
  database, so the next REGISTER sees them; no restart. A server can also start on such a directory, all three
  tables as they are (``KamailioServer(db=...)``), as a platform given the whole export would. (Kamailio 5.6
  does not check the ``version`` rows of tables named at run time, as ``auth_check`` names ``subscriber``.)

* **Behaviour.** REGISTER is authenticated by auth_db against ``ha1``/``ha1b`` (no clear password is read):
  no credentials, a stale or reused nonce → 401 with a ``qop="auth"`` challenge for the SIP domain; a wrong
  password, an unknown user or an authentication user that is not the To user → 403 (the same answer, as a
  platform that does not tell which user names exist would give; the log line ``govlab auth <code>`` says
  which, with auth_db's return code). Then the binding is saved in memory (usrloc), ``Expires: 0`` removes it.
  OPTIONS to the server (no user part) → 200; OPTIONS to a user → the alias_db lookup in ``dbaliases``: 200
  with ``X-Govlab-Target: <extension>`` for a DID, else 404. Anything else → 405.

* **Faults** for the SIP checks, switched at run time (shared variables, set through the control socket), each
  off by default:

  - :meth:`KamailioServer.drop` makes a transport silent; :meth:`KamailioServer.busy` answers every request
    with 503 and a Retry-After;
  - :meth:`KamailioServer.min_expires` answers a REGISTER that authenticated with a shorter Expires 423
    (Interval Too Brief) and ``Min-Expires`` (RFC 3261 §10.2.8), as registrars that protect their location
    table do;
  - :meth:`KamailioServer.redirect` answers every REGISTER on 5060 with 302 and a Contact (another registrar:
    ``sip:sip.<domain>:5070`` within the platform, or a host elsewhere);
  - :meth:`KamailioServer.options_auth` answers OPTIONS to the server with 407 and a Proxy-Authenticate
    challenge, as platforms that authenticate every request do;
  - :meth:`KamailioServer.unknown_user` answers 404 for a user the subscriber table does not have (instead of
    the 403 it shares with a wrong password), as registrars that tell the two apart do.

A server that does not start raises :class:`LabError` with the end of its log.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import random
import re
import shutil
import socket
import ssl
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from tests.lab.base import LabError, ServerProcess, lab_tempdir, log_excerpt, which
from tests.lab.certs import CertFiles, lab_ca

DOMAIN = "voice.gov.bz"
SIP_PORT = 5060
SIPS_PORT = 5061
REDIRECT_PORT = 5070
WRONG_NAME = "wrong.example.net"
START_TIMEOUT = 20.0
#: Where Debian's kamailio package keeps its db_text table templates (the lab's empty tables are copies).
DBTEXT_TEMPLATES = Path("/usr/share/kamailio/dbtext/kamailio")
#: The table versions of Kamailio 5.6's schema, as Debian's template ``version`` table gives them.
TABLE_VERSIONS = {"version": 1, "subscriber": 7, "dbaliases": 1}
#: The tables :meth:`KamailioServer.load` takes from an export directory.
LOADED_TABLES = ("subscriber", "dbaliases")

_live: list[KamailioServer] = []


@dataclass
class KamailioConfig:
    name: str = "voice"
    #: The SIP domain: the realm of the challenges, the domain of every subscriber row that authenticates.
    domain: str = DOMAIN
    #: Digest algorithm of the challenges and of the stored HA1 (MD5, or SHA-256 after RFC 8760). Kamailio
    #: takes one per server, and the subscriber table must hold HA1 values of that algorithm.
    algorithm: str = "MD5"
    #: Serve TLS (the registrar on 5061, and the wrong-name and expired listeners).
    tls: bool = True
    #: Names the registrar's certificate is issued for (default: domain, sip.<domain>, localhost, address).
    tls_names: tuple[str, ...] | None = None
    #: Kamailio's log level (-1 errors … 3 debug); 1 keeps the lab's own log lines and Kamailio's notices.
    debug: int = 1
    #: Extra lines in the request route before anything else (a test that needs a special answer).
    route_prelude: list[str] = field(default_factory=list)


class KamailioServer:
    """One running Kamailio; start it with :meth:`start` (or ``with``), stop with :meth:`cleanup`."""

    def __init__(self, config: KamailioConfig | None = None, *, db: Path | None = None) -> None:
        self.config = config or KamailioConfig()
        self.root = lab_tempdir(f"kamailio-{self.config.name}")
        self.db_dir = self.root / "db"
        self._initial_db = db
        self.prefix = ""
        self._lock: socket.socket | None = None
        self.process: ServerProcess | None = None
        self.certs: CertFiles | None = None
        self.wrong_name_certs: CertFiles | None = None
        self.expired_certs: CertFiles | None = None
        self.ca_file: Path | None = None
        self.startup_seconds: float | None = None
        self._mtimes: dict[str, int] = {}
        #: In this server's Server header, so start-up knows the answer came from this process and not from
        #: another Kamailio on the same addresses (one that is still running while this one fails to bind).
        self.instance = uuid.uuid4().hex[:12]

    # -- addresses -----------------------------------------------------------------------------------

    @property
    def address(self) -> str:
        """The registrar's address: UDP and TCP on :attr:`port`, TLS on :attr:`tls_port`."""
        return f"{self.prefix}.1"

    @property
    def wrong_name_address(self) -> str:
        """TLS on :attr:`tls_port` with a certificate for :data:`WRONG_NAME`."""
        return f"{self.prefix}.2"

    @property
    def expired_address(self) -> str:
        """TLS on :attr:`tls_port` with an expired certificate for the right names."""
        return f"{self.prefix}.3"

    port = SIP_PORT
    tls_port = SIPS_PORT
    #: UDP and TCP on the registrar's address: the platform's second registrar, which never redirects.
    redirect_port = REDIRECT_PORT

    @property
    def domain(self) -> str:
        return self.config.domain

    def endpoints(self) -> dict[str, tuple[str, int]]:
        """transport → (address, port) of the registrar."""
        found = {"udp": (self.address, self.port), "tcp": (self.address, self.port)}
        if self.config.tls:
            found["tls"] = (self.address, self.tls_port)
        return found

    def dns_records(self) -> list[str]:
        """Zone-file lines (absolute names) publishing this registrar for its SIP domain as RFC 3263 finds it,
        for the DNS lab's gov.bz zone (``start_dns_lab(..., records={"gov.bz": server.dns_records()})``):
        NAPTR for SIPS+D2T, SIP+D2T and SIP+D2U, their SRV records to ``sip.<domain>`` on 5061 and 5060, A
        records for ``sip.<domain>`` and the domain itself (the fall-back to the standard ports), and
        ``wrong-name.<domain>`` and ``expired.<domain>`` for the listeners with the bad certificates."""
        d = self.domain
        lines = [f'{d}. NAPTR 10 0 "s" "SIPS+D2T" "" _sips._tcp.{d}.',
                 f'{d}. NAPTR 20 0 "s" "SIP+D2T" "" _sip._tcp.{d}.',
                 f'{d}. NAPTR 30 0 "s" "SIP+D2U" "" _sip._udp.{d}.',
                 f"_sip._tcp.{d}. SRV 10 0 {self.port} sip.{d}.",
                 f"_sip._udp.{d}. SRV 10 0 {self.port} sip.{d}.",
                 f"sip.{d}. A {self.address}",
                 f"{d}. A {self.address}"]
        if self.config.tls:
            lines += [f"_sips._tcp.{d}. SRV 10 0 {self.tls_port} sip.{d}.",
                      f"wrong-name.{d}. A {self.wrong_name_address}",
                      f"expired.{d}. A {self.expired_address}"]
        else:
            lines = [line for line in lines if "SIPS" not in line]
        return lines

    def _claim_prefix(self) -> None:
        candidates = [f"127.56.{n}" for n in range(1, 255)]
        random.shuffle(candidates)
        for prefix in candidates:
            lock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                lock.bind(f"\0govlab-sip-{prefix}")
            except OSError:
                lock.close()
                continue
            if _ports_free(prefix):
                self.prefix, self._lock = prefix, lock
                return
            lock.close()
        raise LabError("no free /24 under 127.56.0.0/16 for a Kamailio lab (every one is locked or has busy ports)")

    # -- files ---------------------------------------------------------------------------------------

    @property
    def log_path(self) -> Path:
        """Everything Kamailio logs (-E: to stderr, captured here from the start)."""
        return self.root / "kamailio.stdout"

    @property
    def conf_path(self) -> Path:
        return self.root / "kamailio.cfg"

    @property
    def ctl_socket(self) -> Path:
        return self.root / "run" / "kamailio_ctl"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _prepare_db(self) -> None:
        self.db_dir.mkdir(parents=True, exist_ok=True)
        if self._initial_db is not None:
            for table in ("version", *LOADED_TABLES):
                source = self._initial_db / table
                if not source.exists():
                    raise LabError(f"{source}: no such db_text table to start Kamailio on")
                self._install(source, table)
            return
        which("kamailio", "kamailio")
        for table in LOADED_TABLES:
            template = DBTEXT_TEMPLATES / table
            if not template.exists():
                raise LabError(f"{template} is missing; reinstall the Debian package kamailio")
            self._install(template, table)
        rows = "".join(f"{n}:{table}:{version}\n" for n, (table, version) in enumerate(TABLE_VERSIONS.items(), 1))
        (self.db_dir / "version").write_text("id(int,auto) table_name(string) table_version(int)\n" + rows)

    def _install(self, source: Path, table: str) -> None:
        """Copy a table file in atomically, with a modification time later than the one Kamailio last saw
        (db_text compares whole seconds, so two loads within one second would otherwise look unchanged)."""
        target = self.db_dir / table
        tmp = self.db_dir / f".{table}.{uuid.uuid4().hex}"
        shutil.copyfile(source, tmp)
        os.chmod(tmp, 0o600)
        stamp = max(int(time.time()), self._mtimes.get(table, 0) + 1)
        os.utime(tmp, (stamp, stamp))
        os.replace(tmp, target)
        self._mtimes[table] = stamp

    def _tls_material(self) -> None:
        ca = lab_ca()
        tls_dir = self.root / "tls"
        names = self.config.tls_names or (self.domain, f"sip.{self.domain}", "localhost", self.address)
        self.certs = ca.issue(f"kamailio-{self.config.name}", names, directory=tls_dir)
        self.wrong_name_certs = ca.issue(f"kamailio-{self.config.name}-wrong-name", (WRONG_NAME,), directory=tls_dir)
        self.expired_certs = ca.issue(f"kamailio-{self.config.name}-expired", names, expired=True, directory=tls_dir)
        self.ca_file = ca.ca_file
        (self.root / "tls.cfg").write_text(f"""# generated by the govmigrate test lab
[server:default]
method = TLSv1.2+
verify_certificate = no
require_certificate = no
certificate = {self.certs.cert}
private_key = {self.certs.key}

[server:{self.wrong_name_address}:{self.tls_port}]
method = TLSv1.2+
verify_certificate = no
require_certificate = no
certificate = {self.wrong_name_certs.cert}
private_key = {self.wrong_name_certs.key}

[server:{self.expired_address}:{self.tls_port}]
method = TLSv1.2+
verify_certificate = no
require_certificate = no
certificate = {self.expired_certs.cert}
private_key = {self.expired_certs.key}

[client:default]
verify_certificate = no
require_certificate = no
""")

    def _render(self) -> str:
        c = self.config
        listen = "".join(f"listen={proto}:{self.address}:{port}\n" for port in (self.port, self.redirect_port)
                         for proto in ("udp", "tcp"))
        tls_core = "enable_tls=no\n"
        tls_module = ""
        if c.tls:
            listen += "".join(f"listen=tls:{a}:{self.tls_port}\n"
                              for a in (self.address, self.wrong_name_address, self.expired_address))
            tls_core = "enable_tls=yes\n"
            tls_module = f'loadmodule "tls.so"\nmodparam("tls", "config", "{self.root}/tls.cfg")\n'
        db_url = f"text://{self.db_dir}"
        prelude = "".join(f"    {line}\n" for line in c.route_prelude)
        return f"""#!KAMAILIO
# generated by the govmigrate test lab ({c.name}, {self.prefix}.0/24)
debug={c.debug}
log_stderror=yes
log_prefix="govlab "
fork=yes
children=2
tcp_children=2
auto_aliases=no
alias="{c.domain}"
alias="sip.{c.domain}"
dns=no
rev_dns=no
use_dns_cache=no
server_header="Server: govmigrate-lab-kamailio {self.instance}"
user_agent_header="User-Agent: govmigrate-lab-kamailio"
rundir="{self.root}/run"
{listen}{tls_core}
mpath="{_module_dir()}"
loadmodule "db_text.so"
loadmodule "ctl.so"
loadmodule "kex.so"
loadmodule "corex.so"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "xlog.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "auth.so"
loadmodule "auth_db.so"
loadmodule "alias_db.so"
{tls_module}
modparam("db_text", "db_mode", 1)
modparam("ctl", "binrpc", "unix:{self.ctl_socket}")
modparam("usrloc", "db_mode", 0)
modparam("usrloc", "use_domain", 1)
modparam("registrar", "max_expires", 3600)
modparam("auth", "qop", "auth")
modparam("auth", "algorithm", "{c.algorithm}")
modparam("auth", "secret", "{uuid.uuid4().hex}")
modparam("auth_db", "db_url", "{db_url}")
modparam("auth_db", "calculate_ha1", 0)
modparam("auth_db", "password_column", "ha1")
modparam("auth_db", "password_column_2", "ha1b")
modparam("auth_db", "use_domain", 1)
modparam("alias_db", "db_url", "{db_url}")
modparam("alias_db", "use_domain", 1)
modparam("pv", "shvset", "drop_udp=i:0")
modparam("pv", "shvset", "drop_tcp=i:0")
modparam("pv", "shvset", "drop_tls=i:0")
modparam("pv", "shvset", "busy=i:0")
modparam("pv", "shvset", "min_expires=i:0")
modparam("pv", "shvset", "redirect=i:0")
modparam("pv", "shvset", "redirect_to=s:sip:nowhere.invalid")
modparam("pv", "shvset", "options_auth=i:0")
modparam("pv", "shvset", "unknown_404=i:0")

request_route {{
{prelude}    if (($pr == "udp" && $shv(drop_udp) == 1) || ($pr == "tcp" && $shv(drop_tcp) == 1)
            || ($pr == "tls" && $shv(drop_tls) == 1)) {{
        drop;
    }}
    if ($shv(busy) > 0) {{
        append_to_reply("Retry-After: $shv(busy)\\r\\n");
        sl_send_reply("503", "Service Unavailable");
        exit;
    }}
    if (!mf_process_maxfwd_header("10")) {{
        sl_send_reply("483", "Too Many Hops");
        exit;
    }}
    if (is_method("REGISTER")) {{
        route(REGISTRAR);
        exit;
    }}
    if (is_method("OPTIONS")) {{
        route(OPTIONS);
        exit;
    }}
    if (is_method("ACK")) {{
        exit;
    }}
    sl_send_reply("405", "Method Not Allowed");
    exit;
}}

route[REGISTRAR] {{
    if ($shv(redirect) == 1 && $Rp == {self.port}) {{
        append_to_reply("Contact: <$shv(redirect_to)>\r\n");
        sl_send_reply("302", "Moved Temporarily");
        exit;
    }}
    if ($td != "{c.domain}") {{
        xlog("L_NOTICE", "govlab register refused: domain $td is not {c.domain}\\n");
        sl_send_reply("403", "Forbidden");
        exit;
    }}
    if (!auth_check("{c.domain}", "subscriber", "1")) {{
        $var(rc) = $rc;
        xlog("L_NOTICE", "govlab auth $var(rc) user=$au to=$tu transport=$pr\\n");
        if ($var(rc) == -4 || $var(rc) == -5 || $var(rc) == -6) {{
            auth_challenge("{c.domain}", "1");
            exit;
        }}
        if ($var(rc) == -3 && $shv(unknown_404) == 1) {{
            sl_send_reply("404", "Not Found");
            exit;
        }}
        sl_send_reply("403", "Forbidden");
        exit;
    }}
    consume_credentials();
    if ($shv(min_expires) > 0 && is_present_hf("Expires") && $(hdr(Expires){{s.int}}) > 0
            && $(hdr(Expires){{s.int}}) < $shv(min_expires)) {{
        append_to_reply("Min-Expires: $shv(min_expires)\r\n");
        sl_send_reply("423", "Interval Too Brief");
        exit;
    }}
    if (!save("location")) {{
        sl_reply_error();
        exit;
    }}
    xlog("L_NOTICE", "govlab registered user=$tU expires=$hdr(Expires) transport=$pr\\n");
    exit;
}}

route[OPTIONS] {{
    if ($rU == $null) {{
        if ($shv(options_auth) == 1 && !is_present_hf("Proxy-Authorization")) {{
            proxy_challenge("{c.domain}", "1");
            exit;
        }}
        sl_send_reply("200", "OK");
        exit;
    }}
    if (alias_db_lookup("dbaliases")) {{
        append_to_reply("X-Govlab-Target: $rU\\r\\n");
        sl_send_reply("200", "OK");
        exit;
    }}
    sl_send_reply("404", "Not Found");
    exit;
}}
"""

    # -- lifecycle -----------------------------------------------------------------------------------

    def start(self) -> KamailioServer:
        binary = which("kamailio", "kamailio")
        started = time.monotonic()
        _live.append(self)
        try:
            self._claim_prefix()
            (self.root / "run").mkdir(exist_ok=True)
            self._prepare_db()
            if self.config.tls:
                self._tls_material()
            self.conf_path.write_text(self._render())
            check = subprocess.run([binary, "-c", "-f", str(self.conf_path)], capture_output=True, text=True,
                                   timeout=30)
            if check.returncode != 0:
                raise LabError(f"kamailio ({self.config.name}) refused its configuration\n"
                               + "\n".join((check.stderr or check.stdout).splitlines()[-30:]))
            self.process = ServerProcess([binary, "-DD", "-E", "-m", "64", "-M", "8", "-f", str(self.conf_path)],
                                         log=self.root / "kamailio.log", what=f"kamailio ({self.config.name})",
                                         cwd=self.root)
            self._wait_ready()
        except BaseException:
            self.cleanup()
            raise
        self.startup_seconds = time.monotonic() - started
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        pending = [(transport, self.address) for transport in self.endpoints()]
        if self.config.tls:
            pending += [("tls", self.wrong_name_address), ("tls", self.expired_address)]
        while pending:
            self._check_alive()
            transport, address = pending[0]
            try:
                reply = self.options(f"sip:{address}", transport=transport, address=address, timeout=0.5)
                if reply.status == 200 and (reply.header("Server") or "").endswith(self.instance):
                    pending.pop(0)
                    continue
            except (OSError, LabError):
                pass
            if time.monotonic() > deadline:
                raise LabError(f"kamailio ({self.config.name}) did not answer OPTIONS over {transport} on "
                               f"{address} within {START_TIMEOUT:.0f}s\n{self.excerpt()}")
            time.sleep(0.05)
        while not self.ctl_socket.exists():
            self._check_alive()
            if time.monotonic() > deadline:
                raise LabError(f"kamailio ({self.config.name}) made no control socket\n{self.excerpt()}")
            time.sleep(0.05)

    def _check_alive(self) -> None:
        if self.process is None:
            raise LabError(f"kamailio ({self.config.name}) is not running")
        if self.process.proc.poll() is not None:
            raise LabError(f"kamailio ({self.config.name}) exited with status {self.process.proc.returncode} "
                           f"during start-up\n{self.excerpt()}")

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.proc.poll() is None

    def excerpt(self, lines: int = 30) -> str:
        """The end of Kamailio's log, as a failing test shows it."""
        return log_excerpt(self.log_path, lines).replace("server log", f"kamailio log ({self.log_path})")

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None

    def cleanup(self) -> None:
        self.stop()
        if self._lock is not None:
            self._lock.close()
            self._lock = None
        shutil.rmtree(self.root, ignore_errors=True)
        if self in _live:
            _live.remove(self)

    def __enter__(self) -> KamailioServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    # -- subscribers ---------------------------------------------------------------------------------

    def load(self, export_dir: Path) -> None:
        """Provision what ``write_kamailio`` wrote to ``export_dir`` (its ``subscriber`` table, and its
        ``dbaliases`` table where there is one): the next request Kamailio handles sees it."""
        found = False
        for table in LOADED_TABLES:
            source = Path(export_dir) / table
            if source.exists():
                self._install(source, table)
                found = True
        if not found:
            raise LabError(f"{export_dir} holds neither a subscriber nor a dbaliases table")

    # -- control -------------------------------------------------------------------------------------

    def kamcmd(self, *args: str, errors_ok: bool = False) -> str:
        """An RPC through the server's own control socket; an RPC error (``error: ...`` on stdout, which kamcmd
        exits 0 for) raises unless ``errors_ok``."""
        result = subprocess.run([which("kamcmd", "kamailio"), "-s", f"unix:{self.ctl_socket}", *args],
                                capture_output=True, text=True, timeout=30)
        if result.returncode != 0 or (result.stdout.startswith("error") and not errors_ok):
            raise LabError(f"kamcmd {' '.join(args)} failed: {(result.stderr or result.stdout).strip()}\n"
                           f"{self.excerpt()}")
        return result.stdout

    def contacts(self, user: str) -> list[str]:
        """The contacts registered for ``user`` in the SIP domain (usrloc, in memory)."""
        out = self.kamcmd("ul.lookup", "location", f"{user}@{self.domain}", errors_ok=True)
        if "AOR not found" in out:
            return []
        if out.startswith("error"):
            raise LabError(f"kamcmd ul.lookup failed: {out.strip()}")
        return [line.split(":", 1)[1].strip() for line in out.splitlines() if line.strip().startswith("Address:")]

    def drop(self, *transports: str) -> None:
        """Make these transports silent (requests are read and dropped, nothing is answered); none: all answer."""
        for transport in ("udp", "tcp", "tls"):
            self.kamcmd("pv.shvSet", f"drop_{transport}", "int", "1" if transport in transports else "0")

    def busy(self, retry_after: int | None) -> None:
        """Answer every request with 503 and ``Retry-After: retry_after`` (seconds); None: answer normally."""
        self.kamcmd("pv.shvSet", "busy", "int", str(retry_after or 0))

    def min_expires(self, seconds: int | None) -> None:
        """Answer an authenticated REGISTER whose Expires is shorter than ``seconds`` with 423 Interval Too Brief
        and ``Min-Expires: seconds``; None: take any expiry."""
        self.kamcmd("pv.shvSet", "min_expires", "int", str(seconds or 0))

    def redirect(self, contact: str | None) -> None:
        """Answer every REGISTER on port 5060 with 302 Moved Temporarily and ``Contact: <contact>``; None: register
        as usual. (Port 5070, the second registrar, never redirects.)"""
        if contact:
            self.kamcmd("pv.shvSet", "redirect_to", "str", contact)
        self.kamcmd("pv.shvSet", "redirect", "int", "1" if contact else "0")

    def options_auth(self, on: bool) -> None:
        """Answer OPTIONS to the server with 407 Proxy Authentication Required and a challenge."""
        self.kamcmd("pv.shvSet", "options_auth", "int", "1" if on else "0")

    def unknown_user(self, status: int) -> None:
        """What a REGISTER for a user the subscriber table lacks gets after its credentials: 403 (the default, the
        same as a wrong password) or 404."""
        if status not in (403, 404):
            raise ValueError("403 or 404")
        self.kamcmd("pv.shvSet", "unknown_404", "int", "1" if status == 404 else "0")

    def reset(self) -> None:
        """Every run-time fault off: the behaviour a server starts with."""
        self.drop()
        self.busy(None)
        self.min_expires(None)
        self.redirect(None)
        self.options_auth(False)
        self.unknown_user(403)

    # -- the lab's own SIP view ----------------------------------------------------------------------

    def options(self, uri: str, *, transport: str = "udp", address: str | None = None, timeout: float = 2.0,
                verify: bool = False) -> SipReply:
        """Send one OPTIONS and return the reply: the lab's own minimal client, independent of govmigrate."""
        return sip_request("OPTIONS", uri, address or self.address, self.tls_port if transport == "tls" else self.port,
                           transport=transport, timeout=timeout, ca_file=self.ca_file if verify else None)


@dataclass
class SipReply:
    status: int
    reason: str
    headers: dict[str, str]

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class _SipSocket:
    """One connected socket (UDP, TCP or TLS) of the lab's own minimal SIP client."""

    def __init__(self, address: str, port: int, transport: str, timeout: float, ca_file: Path | None,
                 server_name: str | None) -> None:
        self.transport = transport
        self.where = f"{address}:{port}"
        kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
        raw = socket.socket(socket.AF_INET, kind)
        raw.settimeout(timeout)
        try:
            raw.connect((address, port))
            self.sock: socket.socket | ssl.SSLSocket = raw
            if transport == "tls":
                ctx = ssl.create_default_context(cafile=str(ca_file)) if ca_file else ssl._create_unverified_context()
                self.sock = ctx.wrap_socket(raw, server_hostname=server_name or address)
        except BaseException:
            raw.close()
            raise
        self.local, self.local_port = self.sock.getsockname()
        self._buffer = b""

    def via(self) -> str:
        proto = self.transport.upper()
        return f"Via: SIP/2.0/{proto} {self.local}:{self.local_port};branch=z9hG4bK{uuid.uuid4().hex[:16]};rport"

    def exchange(self, message: str) -> SipReply:
        """Send a request; return its first final reply (provisional ones are skipped)."""
        self.sock.sendall(message.encode())
        while True:
            if self.transport == "udp":
                data = self.sock.recv(65535)
            else:
                while b"\r\n\r\n" not in self._buffer:
                    chunk = self.sock.recv(65535)
                    if not chunk:
                        raise LabError(f"{self.where} closed the connection without a final reply")
                    self._buffer += chunk
                data, self._buffer = self._buffer, b""
            head, _, rest = data.partition(b"\r\n\r\n")
            if self.transport != "udp":
                self._buffer = rest  # our requests have no body, and neither have the lab's replies
            lines = head.decode(errors="replace").split("\r\n")
            parts = lines[0].split(" ", 2)
            if len(parts) < 2 or parts[0] != "SIP/2.0" or not parts[1].isdigit():
                raise LabError(f"not a SIP reply from {self.where}: {lines[0]!r}")
            headers: dict[str, str] = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            if int(parts[1]) >= 200:
                return SipReply(int(parts[1]), parts[2] if len(parts) > 2 else "", headers)

    def close(self) -> None:
        self.sock.close()


def sip_request(method: str, uri: str, address: str, port: int, *, transport: str = "udp", timeout: float = 2.0,
                ca_file: Path | None = None, server_name: str | None = None) -> SipReply:
    """One request without authentication, its first final reply parsed (provisional replies are skipped).
    With ``ca_file``, TLS verifies the server's certificate for ``server_name`` (default: the address)."""
    conn = _SipSocket(address, port, transport, timeout, ca_file, server_name)
    try:
        return conn.exchange(f"{method} {uri} SIP/2.0\r\n{conn.via()}\r\nMax-Forwards: 70\r\n"
                             f"From: <sip:lab@{conn.local}>;tag={uuid.uuid4().hex[:8]}\r\nTo: <{uri}>\r\n"
                             f"Call-ID: {uuid.uuid4().hex}\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n")
    finally:
        conn.close()


_DIGESTS = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}


def digest_register(server: KamailioServer, user: str, password: str, *, transport: str = "udp",
                    algorithm: str = "MD5", expires: int = 60, timeout: float = 2.0) -> list[SipReply]:
    """REGISTER with the lab's own digest client (RFC 2617/8760, qop=auth): the replies in order, normally
    401 and then 200 or 403. sipsak only speaks MD5; this one also SHA-256."""
    address, port = server.endpoints()[transport]
    conn = _SipSocket(address, port, transport, timeout, None, None)
    domain = server.domain
    call_id, tag = uuid.uuid4().hex, uuid.uuid4().hex[:8]
    contact = f"<sip:{user}@{conn.local}:{conn.local_port};transport={transport}>"

    def request(cseq: int, authorization: str = "") -> SipReply:
        return conn.exchange(f"REGISTER sip:{domain} SIP/2.0\r\n{conn.via()}\r\nMax-Forwards: 70\r\n"
                             f"From: <sip:{user}@{domain}>;tag={tag}\r\nTo: <sip:{user}@{domain}>\r\n"
                             f"Call-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\nContact: {contact}\r\n"
                             f"Expires: {expires}\r\n{authorization}Content-Length: 0\r\n\r\n")

    try:
        replies = [request(1)]
        challenge = replies[0].header("www-authenticate")
        if replies[0].status != 401 or not challenge:
            return replies
        params = dict(re.findall(r'(\w+)="?([^",]*)"?', challenge))
        digest = _DIGESTS[params.get("algorithm", "MD5").upper()]
        if params.get("algorithm", "MD5").upper() != algorithm.upper():
            raise LabError(f"the server challenged with {params.get('algorithm')}, not {algorithm}")

        def h(text: str) -> str:
            return digest(text.encode()).hexdigest()

        cnonce, nc, uri = uuid.uuid4().hex[:16], "00000001", f"sip:{domain}"
        ha1 = h(f"{user}:{params['realm']}:{password}")
        response = h(f"{ha1}:{params['nonce']}:{nc}:{cnonce}:auth:{h(f'REGISTER:{uri}')}")
        replies.append(request(2, f'Authorization: Digest username="{user}", realm="{params["realm"]}", '
                                  f'nonce="{params["nonce"]}", uri="{uri}", response="{response}", '
                                  f'algorithm={params.get("algorithm", "MD5")}, qop=auth, nc={nc}, '
                                  f'cnonce="{cnonce}"\r\n'))
        return replies
    finally:
        conn.close()


@dataclass
class SipsakRun:
    """What one sipsak run did: its exit status (0: a 200 came back) and everything it printed."""

    returncode: int
    output: str

    @property
    def registered(self) -> bool:
        return self.returncode == 0

    @property
    def statuses(self) -> list[int]:
        """The status code of every reply sipsak printed, in order (sipsak prints them with -vvv, which :func:`sipsak` passes)."""
        return [int(code) for code in re.findall(r"^SIP/2\.0 ([1-6][0-9][0-9]) ", self.output, re.MULTILINE)]


def sipsak(server: KamailioServer, user: str, password: str, *, transport: str = "udp", expires: int = 60,
           address: str | None = None, auth_user: str | None = None, timeout: float = 30.0) -> SipsakRun:
    """REGISTER ``user`` at ``server`` with sipsak (Debian's package, an independent SIP client), answering the
    digest challenge with ``password``.

    sipsak 0.9.8 over TLS: it reads nothing back from a TLS 1.3 session (GnuTLS), so it runs with a GnuTLS
    priority file of the lab's that disables TLS 1.3 (the server still offers 1.2 and 1.3); and it verifies no
    certificate at all, not even with ``--tls-ca-cert``, so certificate tests use a verifying client instead."""
    binary = which("sipsak", "sipsak")
    port = server.tls_port if transport == "tls" else server.port
    argv = [binary, "-p", f"{address or server.address}:{port}", "-U", "-s", f"sip:{user}@{server.domain}",
            "-u", auth_user or user, "-a", password, "-x", str(expires), "-vvv"]
    if expires == 0:
        argv += ["-C", "*"]
    env = dict(os.environ)
    if transport == "tls":
        argv += ["-E", "tls", "--tls-ignore-cert-failure"]
        priority = server.root / "gnutls-no-tls13.cfg"
        priority.write_text("[overrides]\ndisabled-version = tls1.3\n")
        env["GNUTLS_SYSTEM_PRIORITY_FILE"] = str(priority)
    else:
        argv += ["-E", transport]
    result = subprocess.run(argv, capture_output=True, timeout=timeout, env=env)
    output = (result.stdout + result.stderr).decode("utf-8", errors="replace")
    return SipsakRun(result.returncode, output)


def _module_dir() -> str:
    for candidate in ("/usr/lib/x86_64-linux-gnu/kamailio/modules", "/usr/lib/aarch64-linux-gnu/kamailio/modules",
                      "/usr/lib/kamailio/modules"):
        if os.path.exists(os.path.join(candidate, "auth_db.so")):
            return candidate
    raise LabError("Kamailio's modules were not found; install the Debian package kamailio")


def _ports_free(prefix: str) -> bool:
    """Every port the lab would listen on under ``prefix`` can be bound now (probed as Kamailio binds)."""
    probes = [(f"{prefix}.1", port, kind) for port in (SIP_PORT, REDIRECT_PORT)
              for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM)]
    probes += [(f"{prefix}.{host}", SIPS_PORT, socket.SOCK_STREAM) for host in (1, 2, 3)]
    for address, port, kind in probes:
        with socket.socket(socket.AF_INET, kind) as sock:
            if kind == socket.SOCK_STREAM:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((address, port))
            except OSError:
                return False
    return True


def start_kamailio(config: KamailioConfig | None = None, *, db: Path | None = None) -> KamailioServer:
    """Start a Kamailio and return when every transport answers OPTIONS and its control socket is there."""
    return KamailioServer(config, db=db).start()


@atexit.register
def _cleanup_all() -> None:
    for server in list(_live):
        with contextlib.suppress(Exception):
            server.cleanup()
