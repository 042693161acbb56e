"""BIND9 for the lab: a root and gov.bz parent, a primary and a secondary of the ministry zones, a resolver.

Each DNS lab takes a /24 of its own under 127.0.0.0/8 (e.g. 127.53.7) and gives every server its own
address on port 53, because DNS delegation follows names to addresses on a fixed port:

* ``.10`` the parent: authoritative for the root zone (which delegates gov.bz) and for gov.bz (the central
  host's names, and a delegation with glue for every ministry domain);
* ``.11`` the primary of every ministry zone: RFC 2136 updates and AXFR only with the lab's TSIG key, NOTIFY
  to the secondary;
* ``.12`` the secondary, transferring every zone with the TSIG key;
* ``.13`` a recursive resolver whose root hint is the parent. It caches nothing longer than
  :data:`MAX_TTL_WAIT` seconds, the TTL wait the lab's project files allow (``dns.max_ttl_wait``), so a
  change is visible through it as soon as a shortened TTL wait says it should be.

named listens only on addresses configured on an interface, so the lab adds its four addresses to ``lo``
(``ip addr add … dev lo label lo:govdns``) and removes them at clean-up: that, and port 53, need root.
Several labs can run at once: a /24 is taken only when no address of it is on ``lo``, its ports are free,
and an abstract socket named after it (one per network namespace, released when its process dies) could be
bound; addresses a killed lab left behind are recognised by their label and removed. Every named runs in the foreground as ``bind`` with its own directory, configuration, pid
file, rndc key and control channel (its own address, port 953) under the lab's temporary directory.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import json
import os
import pwd
import random
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.tsig
import dns.tsigkeyring
import dns.update

from tests.lab.base import LabError, ServerProcess, lab_tempdir, which

PARENT_ZONE = "gov.bz"
ROOT_NS = "ns.root.lab."
PARENT_NS = "ns.gov.bz."
#: The label the lab's loopback addresses carry, so leftovers of a killed lab are recognised as ours.
LO_LABEL = "lo:govdns"
CONTROL_PORT = 953
#: The longest TTL wait the lab's project files allow, and the longest the resolver caches anything.
MAX_TTL_WAIT = 2
SERIAL = 2026010101
START_TIMEOUT = 15.0
TSIG_ALGORITHM = "hmac-sha256"

#: The central host's names in gov.bz: name → (type, rdata as :meth:`DnsLab.query` returns it).
CENTRAL: dict[str, tuple[str, str]] = {
    "mx1.mail.gov.bz": ("A", "127.0.0.1"),
    "mx2.mail.gov.bz": ("A", "127.0.0.1"),
    "imap.mail.gov.bz": ("A", "127.0.0.1"),
    "smtp.mail.gov.bz": ("A", "127.0.0.1"),
    "autodiscover.mail.gov.bz": ("A", "127.0.0.1"),
    "_spf.mail.gov.bz": ("TXT", '"v=spf1 ip4:127.0.0.1 -all"'),
}

#: SPF include targets defined in gov.bz, each ``v=spf1 ip4:192.0.2.N -all`` (no lookups of its own), for
#: building records that need a given number of DNS lookups: see :func:`spf_with_lookups`.
SPF_INCLUDES = [f"_spf{n}.gov.bz" for n in range(1, 13)]
#: An SPF include that itself includes three of the above: four lookups for whoever includes it.
SPF_NESTED = "_spf-nested.gov.bz"

DKIM_SELECTOR = "gov2026"
#: The central signer's DKIM key record: a real RSA-2048 public key (longer than 255 bytes, so a TXT record
#: holding it must be split into several strings).
DKIM_KEY = (
    "v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAonP72RmI5llSEKXv+fhbpuxlCsjF+P3H8Gp3wnGA"
    "gN8BQ+674/MPxwLjUZgkVS/Vc9FA4WIjtpZCLERmXsrTvISQ9dlwGgN5zeLbBnmw7S6U8jxdYRtLDJgsC/Wtmace8d86epz/9am8mNd6"
    "WjQH0DH/p27bmHzmEiTu/yV/X1EvZj98aXTKE+d5d9+OC6Dow4GpyH22lmosfM7IZs/BXsBS7Yw5aCnl4ro8LNhSqgetjPJ5ie+I29cu"
    "oZv6QdfBW/WXOfNOTQ/vc7AAw7C/mg0s/sjoaTtm6c/4xMRwAtUOgjYxgQMaknaWGZvTTGtOzyqhcLU8RCfKF2WkEe8yaQIDAQAB"
)

_live: list[DnsLab] = []


def spf_with_lookups(lookups: int, *, tail: str = "-all") -> str:
    """An SPF record whose evaluation needs ``lookups`` DNS lookups (includes of :data:`SPF_INCLUDES`). Up to
    11 lookups it fits one TXT string (255 bytes); longer needs :func:`txt_rdata` in a zone line."""
    if not 0 <= lookups <= len(SPF_INCLUDES):
        raise ValueError(f"at most {len(SPF_INCLUDES)} lookups")
    return " ".join(["v=spf1", *(f"include:{name}" for name in SPF_INCLUDES[:lookups]), tail])


def written_by_someone_else(domain: str) -> dict[str, list[str]]:
    """Zone lines of a ministry zone with the mistakes real ones carry (start the lab with
    ``stale_secondary=[domain]`` for the fourth: a secondary one serial behind that never transfers):

    * the MX names ``smtp.<domain>``, an alias (CNAME) of ``relay.<domain>``, which does not exist; BIND loads
      such a zone with a warning, but refuses an update that adds that MX again (its integrity check);
    * the parent's glue for ``ns2.<domain>`` is the primary's address; the zone says the secondary's;
    * the parent lists a third name server, ``ns3.<domain>``, at an address of the lab where nothing listens.
    """
    return {
        domain: [f"@ MX 10 smtp.{domain}.", f"smtp CNAME relay.{domain}."],
        PARENT_ZONE: [f"{domain}. NS ns1.{domain}.", f"{domain}. NS ns2.{domain}.", f"{domain}. NS ns3.{domain}.",
                      f"ns2.{domain}. A {{net}}.11", f"ns3.{domain}. A {{net}}.14"],
    }


def txt_rdata(text: str) -> str:
    """``text`` as TXT rdata in zone-file syntax: quoted, split into strings of at most 255 bytes."""
    data = text.encode()
    chunks = [data[i:i + 255] for i in range(0, len(data), 255)] or [b""]
    return " ".join('"' + c.decode().replace("\\", "\\\\").replace('"', '\\"') + '"' for c in chunks)


@dataclass
class BindServer:
    """One named of a lab. ``role`` is parent, primary, secondary or resolver."""

    role: str
    address: str
    root: Path
    port: int = 53
    control_port: int = CONTROL_PORT
    process: ServerProcess | None = None

    @property
    def name(self) -> str:
        return self.role

    @property
    def conf_path(self) -> Path:
        return self.root / "named.conf"

    @property
    def log_path(self) -> Path:
        """Everything named logs (it runs with -g: all logging to stderr, captured here from the start)."""
        return self.root / "named.stdout"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.proc.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __repr__(self) -> str:
        return f"BindServer({self.role}, {self.address})"


@dataclass
class _Records:
    """One zone's lines, keyed by (absolute owner, type) so that a test's lines replace the defaults."""

    origin: str
    lines: list[tuple[tuple[str, str] | None, str]] = field(default_factory=list)

    def add(self, line: str) -> None:
        self.lines.append((_line_key(line, self.origin), line))

    def override(self, lines: list[str]) -> None:
        keys = {_line_key(line, self.origin) for line in lines} - {None}
        self.lines = [(key, line) for key, line in self.lines if key not in keys]
        for line in lines:
            self.add(line)

    def text(self) -> str:
        head = f"$ORIGIN {self.origin}\n$TTL 3600\n"
        return head + "\n".join(line for _, line in self.lines) + "\n"


def _absolute(name: str, origin: str) -> str:
    name = name.lower()
    if name == "@":
        return origin
    if name.endswith("."):
        return name
    return f"{name}.{origin}" if origin != "." else f"{name}."


def _line_key(line: str, origin: str) -> tuple[str, str] | None:
    """(absolute owner, TYPE) of a zone-file line, or None when it is not a plain record line (a
    directive, a continuation, something broken: such lines are kept as they are, for named to judge)."""
    if not line.strip() or line[0].isspace() or line.startswith(("$", ";")):
        return None
    tokens = line.split()
    rest = tokens[1:]
    while rest and (rest[0][0].isdigit() or rest[0].upper() in ("IN", "CH", "HS")):
        rest = rest[1:]
    if not rest:
        return None
    try:
        rdtype = dns.rdatatype.from_text(rest[0].upper())
    except dns.rdatatype.UnknownRdatatype:
        return None
    return _absolute(tokens[0], origin), dns.rdatatype.to_text(rdtype)


# -- addresses ------------------------------------------------------------------------------------------


def _lo_addresses() -> dict[str, str]:
    """IPv4 address → label of every address on lo."""
    out = subprocess.run([which("ip", "iproute2"), "-j", "-4", "addr", "show", "dev", "lo"], capture_output=True,
                         text=True, check=True).stdout
    result = {}
    for link in json.loads(out or "[]"):
        for info in link.get("addr_info", []):
            result[info["local"]] = info.get("label", "lo")
    return result


def _port_free(address: str, port: int, kind: int) -> bool:
    with socket.socket(socket.AF_INET, kind) as sock:
        if kind == socket.SOCK_STREAM:
            # Lets TIME_WAIT connections of an earlier lab pass; a listener still makes bind fail.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except PermissionError:
            raise LabError(f"cannot bind {address}:{port}: the DNS lab needs root (port 53, ip addr add … dev lo)")
        except OSError:
            return False
    return True


def _lock(prefix: str) -> socket.socket | None:
    """The /24's lock: an abstract socket, one per network namespace (as lo is), gone when its holder dies."""
    lock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        lock.bind(f"\0govlab-dns-{prefix}")
    except OSError:
        lock.close()
        return None
    return lock


def _ports_free(prefix: str) -> bool:
    # Probed without SO_REUSEPORT: named binds with it, and a second named of the same user could otherwise
    # share a live lab's address, each answering half the queries.
    return all(_port_free(a, 53, socket.SOCK_DGRAM) and _port_free(a, 53, socket.SOCK_STREAM)
               and _port_free(a, CONTROL_PORT, socket.SOCK_STREAM)
               for a in (f"{prefix}.{host}" for host in (10, 11, 12, 13)))


def _sweep_stale(on_lo: dict[str, str]) -> None:
    """Remove the addresses of labs that were killed before their clean-up (unlocked, nothing listening)."""
    for prefix in {addr.rsplit(".", 1)[0] for addr, label in on_lo.items() if label == LO_LABEL}:
        lock = _lock(prefix)
        if lock is None:
            continue
        try:
            if _ports_free(prefix):
                for addr in [a for a, label in on_lo.items() if label == LO_LABEL and a.startswith(prefix + ".")]:
                    _ip_addr("del", addr)
        finally:
            lock.close()


def _claim_prefix(exclude: set[str]) -> tuple[str, socket.socket]:
    """A /24 under 127.53.0.0/16 that nothing else uses, held by an abstract socket until the lab ends."""
    _sweep_stale(_lo_addresses())
    taken = {addr.rsplit(".", 1)[0] for addr in _lo_addresses()}
    candidates = [f"127.53.{n}" for n in range(1, 255)]
    random.shuffle(candidates)
    for prefix in candidates:
        if prefix in taken or prefix in exclude:
            continue
        lock = _lock(prefix)
        if lock is None:
            continue
        if _ports_free(prefix):
            return prefix, lock
        lock.close()
    raise LabError("no free /24 under 127.53.0.0/16 for a DNS lab (every one has addresses on lo or busy ports)")


def _ip_addr(action: str, address: str) -> subprocess.CompletedProcess:
    argv = [which("ip", "iproute2"), "addr", action, f"{address}/32", "dev", "lo"]
    if action == "add":
        argv += ["label", LO_LABEL]
    return subprocess.run(argv, capture_output=True, text=True)


# -- the lab --------------------------------------------------------------------------------------------


class AddressTaken(LabError):
    """Another program bound one of the lab's addresses between the check and named's start."""


_ADDRESS_TAKEN = ("unable to listen on any configured interfaces", "address in use", "Address already in use")


def _hint(log: str) -> str:
    if "permission denied" in log.lower() and Path("/sys/kernel/security/apparmor").exists():
        return (" (AppArmor is active: Debian's profile for /usr/sbin/named allows only /etc/bind, /var/lib/bind"
                " and /var/cache/bind; put the named profile in complain mode on a test machine)")
    return ""


class DnsLab:
    """Four named servers on a /24 of their own. Start it with :func:`start_dns_lab`."""

    CENTRAL = CENTRAL

    def __init__(self, domains: list[str], records: dict[str, list[str]] | None = None,
                 stale_secondary: list[str] | None = None) -> None:
        self.domains = [d.lower().rstrip(".") for d in domains]
        for domain in self.domains:
            if not domain.endswith("." + PARENT_ZONE) or domain == "mail.gov.bz":
                raise ValueError(f"{domain}: a lab ministry domain is a name under {PARENT_ZONE} (not mail.gov.bz)")
        if len(set(self.domains)) != len(self.domains) or not self.domains:
            raise ValueError("give each ministry domain once, and at least one")
        self.records = {k.lower().rstrip(".") or ".": v for k, v in (records or {}).items()}
        for zone in self.records:
            if zone not in (*self.domains, PARENT_ZONE, "."):
                raise ValueError(f"records for {zone!r}: the lab serves only {', '.join(self.domains)}, "
                                 f"{PARENT_ZONE} and the root")
        self.tsig_name = "govlab-tsig"
        self.tsig_algorithm = TSIG_ALGORITHM
        self.tsig_secret = base64.b64encode(secrets.token_bytes(32)).decode()
        self._rndc_secret = base64.b64encode(secrets.token_bytes(32)).decode()
        # Updates to a refused zone must match this key, which nobody outside named knows.
        self._nobody_secret = base64.b64encode(secrets.token_bytes(32)).decode()
        self.root = lab_tempdir("dns")
        self.prefix = ""
        self._lock: socket.socket | None = None
        self._our_addresses: list[str] = []
        self._refused: set[str] = set()
        self._held = False
        #: Zones the secondary serves from a copy one serial behind and never transfers (see start_dns_lab).
        self._stale = {d.lower().rstrip(".") for d in stale_secondary or []}
        if self._stale - set(self.domains):
            raise ValueError(f"stale_secondary: {', '.join(sorted(self._stale - set(self.domains)))} is not a "
                             "ministry domain of this lab")
        self.parent: BindServer
        self.primary: BindServer
        self.secondary: BindServer
        self.resolver: BindServer
        self.startup_seconds: float | None = None

    @property
    def servers(self) -> list[BindServer]:
        return [self.parent, self.primary, self.secondary, self.resolver]

    @property
    def keyring(self) -> dict:
        return dns.tsigkeyring.from_text({self.tsig_name: (self.tsig_algorithm, self.tsig_secret)})

    # -- zone content -----------------------------------------------------------------------------------

    def _lines(self, zone: str) -> list[str]:
        """The test's lines for ``zone``, with ``{net}`` standing for the lab's /24 (e.g. ``{net}.14``: an
        address of the lab where nothing listens)."""
        return [line.replace("{net}", self.prefix) for line in self.records.get(zone, [])]

    def _ministry_zone(self, domain: str, serial: int = SERIAL) -> str:
        z = _Records(domain + ".")
        z.add(f"@ SOA ns1.{domain}. hostmaster.{domain}. {serial} 3600 600 1209600 300")
        z.add(f"@ NS ns1.{domain}.")
        z.add(f"@ NS ns2.{domain}.")
        z.add(f"ns1 A {self.primary.address}")
        z.add(f"ns2 A {self.secondary.address}")
        z.add("mail A 127.0.0.1")
        z.add(f"@ MX 10 mail.{domain}.")
        z.add('@ TXT "v=spf1 mx -all"')
        z.add('_dmarc TXT "v=DMARC1; p=none"')
        z.add(f"autodiscover CNAME mail.{domain}.")
        z.override(self._lines(domain))
        return z.text()

    def _parent_zone(self) -> str:
        z = _Records(PARENT_ZONE + ".")
        z.add(f"@ SOA {PARENT_NS} hostmaster.gov.bz. {SERIAL} 3600 600 1209600 300")
        z.add(f"@ NS {PARENT_NS}")
        z.add(f"{PARENT_NS} A {self.parent.address}")
        for name, (rdtype, rdata) in CENTRAL.items():
            z.add(f"{name}. {rdtype} {rdata}")
        for n, name in enumerate(SPF_INCLUDES, start=1):
            z.add(f'{name}. TXT "v=spf1 ip4:192.0.2.{n} -all"')
        z.add(f'{SPF_NESTED}. TXT "v=spf1 {" ".join("include:" + s for s in SPF_INCLUDES[:3])} -all"')
        for domain in self.domains:
            z.add(f"{domain}. NS ns1.{domain}.")
            z.add(f"{domain}. NS ns2.{domain}.")
            z.add(f"ns1.{domain}. A {self.primary.address}")
            z.add(f"ns2.{domain}. A {self.secondary.address}")
        z.override(self._lines(PARENT_ZONE))
        return z.text()

    def _root_zone(self) -> str:
        z = _Records(".")
        z.add(f"@ SOA {ROOT_NS} hostmaster.root.lab. {SERIAL} 3600 600 1209600 300")
        z.add(f"@ NS {ROOT_NS}")
        z.add(f"{ROOT_NS} A {self.parent.address}")
        z.add(f"{PARENT_ZONE}. NS {PARENT_NS}")
        z.add(f"{PARENT_NS} A {self.parent.address}")
        z.override(self._lines("."))
        return z.text()

    # -- configuration ----------------------------------------------------------------------------------

    def _render(self, server: BindServer) -> str:
        d = server.root
        a = server.address
        recursive = server.role == "resolver"
        options = f"""options {{
    directory "{d}";
    pid-file "{d}/named.pid";
    session-keyfile "{d}/session.key";
    managed-keys-directory "{d}";
    dump-file "{d}/cache.dump";
    statistics-file "{d}/named.stats";
    memstatistics-file "{d}/named.memstats";
    listen-on port {server.port} {{ {a}; }};
    listen-on-v6 {{ none; }};
    query-source address {a};
    notify-source {a};
    transfer-source {a};
    dnssec-validation no;
    allow-query {{ any; }};
    querylog yes;
    # Refresh queries and NOTIFYs go through rate limiters that tick every 500 ms at the default rates
    # (20/s); at these rates they tick every 10 ms, so a change reaches the secondary in milliseconds.
    serial-query-rate 1000;
    notify-rate 1000;
    startup-notify-rate 1000;
    recursion {"yes" if recursive else "no"};
"""
        if recursive:
            options += f"""    allow-recursion {{ 127.0.0.0/8; }};
    max-cache-ttl {MAX_TTL_WAIT};
    max-ncache-ttl {MAX_TTL_WAIT};
    lame-ttl 0;
    max-cache-size 32m;
"""
        options += "    notify no;\n};\n" if server.role != "primary" else "};\n"
        conf = f"""# generated by the govmigrate test lab ({server.role} of {self.prefix}.0/24)
{options}
key "govlab-rndc" {{ algorithm hmac-sha256; secret "{self._rndc_secret}"; }};
controls {{ inet {a} port {server.control_port} allow {{ 127.0.0.0/8; }} keys {{ "govlab-rndc"; }}; }};
key "{self.tsig_name}" {{ algorithm {self.tsig_algorithm}; secret "{self.tsig_secret}"; }};
"""
        if server.role == "parent":
            for zone, filename in ((".", "root.db"), (PARENT_ZONE, "gov.bz.db")):
                conf += f'zone "{zone}" {{ type primary; file "{d}/{filename}"; allow-transfer {{ any; }}; }};\n'
        elif server.role == "primary":
            conf += f'key "govlab-nobody" {{ algorithm hmac-sha256; secret "{self._nobody_secret}"; }};\n'
            for domain in self.domains:
                key = "govlab-nobody" if domain in self._refused else self.tsig_name
                conf += (f'zone "{domain}" {{ type primary; file "{d}/zones/{domain}.db"; '
                         f'allow-update {{ key "{key}"; }}; allow-transfer {{ key "{self.tsig_name}"; }}; '
                         f"notify explicit; also-notify {{ {self.secondary.address}; }}; notify-delay 0; }};\n")
        elif server.role == "secondary":
            # Held (or a stale zone): transfers come from a port of the primary's address where nothing
            # listens, so the secondary keeps serving what it has and its serials fall behind.
            for domain in self.domains:
                port = " port 54" if self._held or domain in self._stale else ""
                conf += (f'zone "{domain}" {{ type secondary; file "{d}/zones/{domain}.db"; '
                         f"masterfile-format text; "
                         f'primaries {{ {self.primary.address}{port} key "{self.tsig_name}"; }}; '
                         f'allow-transfer {{ key "{self.tsig_name}"; }}; }};\n')
        else:
            conf += f'zone "." {{ type hint; file "{d}/root.hint"; }};\n'
        return conf

    def _write_rndc_conf(self) -> Path:
        path = self.root / "rndc.conf"
        path.write_text(f'key "govlab-rndc" {{ algorithm hmac-sha256; secret "{self._rndc_secret}"; }};\n'
                        'options { default-key "govlab-rndc"; };\n')
        path.chmod(0o600)
        return path

    def _prepare(self, server: BindServer) -> None:
        server.root.mkdir(exist_ok=True)
        (server.root / "zones").mkdir(exist_ok=True)
        if server.role == "parent":
            (server.root / "root.db").write_text(self._root_zone())
            (server.root / "gov.bz.db").write_text(self._parent_zone())
        elif server.role == "primary":
            for domain in self.domains:
                (server.root / "zones" / f"{domain}.db").write_text(self._ministry_zone(domain))
        elif server.role == "secondary":
            for domain in self._stale:  # someone copied the zone file by hand, one change ago
                (server.root / "zones" / f"{domain}.db").write_text(self._ministry_zone(domain, SERIAL - 1))
        elif server.role == "resolver":
            (server.root / "root.hint").write_text(f". 3600000 NS {ROOT_NS}\n{ROOT_NS} 3600000 A {self.parent.address}\n")
        self._write_conf(server)

    def _write_conf(self, server: BindServer) -> None:
        server.conf_path.write_text(self._render(server))
        server.conf_path.chmod(0o640)
        uid, gid = _run_as()
        if uid is not None:
            # named reads its configuration again as this user on reconfig, and writes journals and
            # transferred zones in its directory.
            for path in [server.root, *server.root.rglob("*")]:
                os.chown(path, uid, gid)

    # -- processes --------------------------------------------------------------------------------------

    def _launch(self, server: BindServer) -> None:
        binary = which("named", "bind9")
        argv = [binary, "-4", "-g", "-n", "2", "-c", str(server.conf_path)]
        if _run_as()[0] is not None:
            argv += ["-u", "bind"]
        server.process = ServerProcess(argv, log=server.log_path, what=f"named ({server.role}, {server.address})",
                                       cwd=server.root)

    def _ready_checks(self, server: BindServer) -> list:
        if server.role == "parent":
            return [lambda: self._answers_soa(server, "."), lambda: self._answers_soa(server, PARENT_ZONE)]
        if server.role == "primary":
            return [lambda d=d: self._answers_soa(server, d) for d in self.domains]
        if server.role == "secondary":
            checks = [lambda d=d: self._answers_soa(server, d) for d in self.domains]
            if not self._held and self.primary.running:
                checks.append(self._serials_agree)
            return checks
        if self.parent.running:
            return [lambda: self.query(server, "mx1.mail.gov.bz", "A", timeout=1.0) == ["127.0.0.1"]]
        return [lambda: self._answers(server)]

    def _answers_soa(self, server: BindServer, zone: str) -> bool:
        q = dns.message.make_query(zone if zone.endswith(".") else zone + ".", "SOA")
        q.flags &= ~dns.flags.RD
        try:
            r = _exchange(q, server, timeout=1.0)
        except (dns.exception.Timeout, OSError):
            return False
        return r.rcode() == dns.rcode.NOERROR and bool(r.flags & dns.flags.AA) and bool(r.answer)

    def _answers(self, server: BindServer) -> bool:
        try:
            _exchange(dns.message.make_query("version.bind.", "TXT", "CH"), server, timeout=1.0)
        except (dns.exception.Timeout, OSError):
            return False
        return True

    def _serials_agree(self) -> bool:
        try:
            return all(self.serial(self.primary, d) == self.serial(self.secondary, d) for d in self.domains
                       if d not in self._stale)
        except LabError:
            return False

    def _wait_ready(self, servers: list[BindServer], timeout: float = START_TIMEOUT, checks=None) -> None:
        pending = {id(s): (s, list(checks) if checks is not None else self._ready_checks(s)) for s in servers}
        deadline = time.monotonic() + timeout
        while pending:
            for key, (server, checks) in list(pending.items()):
                self._check_started(server)
                while checks and _holds(checks[0]):
                    checks.pop(0)
                if not checks:
                    del pending[key]
            if not pending:
                return
            if time.monotonic() > deadline:
                server = next(iter(pending.values()))[0]
                raise LabError(f"named ({server.role}, {server.address}) did not answer within {timeout:.0f}s\n"
                               f"{_excerpt(server)}")
            time.sleep(0.02)

    def _check_started(self, server: BindServer) -> None:
        """Fail at once, with named's own words, when it exited or will not serve what it was given."""
        assert server.process is not None
        log = server.log_text()
        what = f"named ({server.role}, {server.address})"
        if any(marker in log for marker in _ADDRESS_TAKEN):
            raise AddressTaken(f"{what} could not listen on its address: another program took it\n{_excerpt(server)}")
        if server.process.proc.poll() is not None:
            raise LabError(f"{what} exited with status {server.process.proc.returncode} during start-up"
                           f"{_hint(log)}\n{_excerpt(server)}")
        if "not loaded due to errors" in log:
            raise LabError(f"{what} could not start: a zone was not loaded due to errors\n{_excerpt(server)}")

    def _start_all(self) -> None:
        started = time.monotonic()
        for server in self.servers:
            self._prepare(server)
        self._write_rndc_conf()
        # The primary first, so the secondary's first transfer finds it (a failed first transfer is retried
        # only minutes later); the parent alongside it, and the resolver once the parent answers.
        for server in (self.parent, self.primary):
            self._launch(server)
        self._wait_ready([self.parent, self.primary])
        for server in (self.secondary, self.resolver):
            self._launch(server)
        self._wait_ready([self.secondary, self.resolver])
        self.startup_seconds = time.monotonic() - started

    def _take_addresses(self, exclude: set[str]) -> None:
        self.prefix, self._lock = _claim_prefix(exclude)
        self.parent, self.primary, self.secondary, self.resolver = (
            BindServer(role, f"{self.prefix}.{host}", self.root / role)
            for role, host in (("parent", 10), ("primary", 11), ("secondary", 12), ("resolver", 13)))
        for server in self.servers:
            self._our_addresses.append(server.address)
            result = _ip_addr("add", server.address)
            if result.returncode != 0:
                raise LabError(f"ip addr add {server.address}/32 dev lo failed: {result.stderr.strip()} "
                               "(the DNS lab needs root to give each server its own loopback address)")

    def _release_addresses(self) -> None:
        for address in self._our_addresses:
            _ip_addr("del", address)
        self._our_addresses = []
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def rndc(self, server: BindServer, *args: str) -> str:
        result = subprocess.run([which("rndc", "bind9-utils"), "-c", str(self.root / "rndc.conf"),
                                 "-s", server.address, "-p", str(server.control_port), *args],
                                capture_output=True, text=True, timeout=30)
        if result.returncode != 0:
            raise LabError(f"rndc {' '.join(args)} on the {server.role} failed: "
                           f"{(result.stderr or result.stdout).strip()}\n{_excerpt(server)}")
        return result.stdout

    # -- the lab's own view -----------------------------------------------------------------------------

    def query(self, server: BindServer, name: str, rdtype: str, *, timeout: float = 2.0) -> list[str]:
        """What ``server`` answers for ``name``/``rdtype``, rdata as text, sorted: [] for NXDOMAIN or NODATA.

        Authoritative servers are asked without recursion; a referral answers an NS question with the
        delegation's NS set (what a parent says about a child), and any other question below a delegation
        with []. CNAMEs in the answer are followed. TXT rdata keeps its quotes (a record of several strings
        reads '"a" "b"'). An unreachable server or another rcode raises :class:`LabError`."""
        qname = dns.name.from_text(name)
        qtype = dns.rdatatype.from_text(rdtype)
        q = dns.message.make_query(qname, qtype)
        if server.role != "resolver":
            q.flags &= ~dns.flags.RD
        try:
            r = _exchange(q, server, timeout=timeout)
        except (dns.exception.Timeout, OSError) as exc:
            raise LabError(f"{server.role} ({server.address}) did not answer {name} {rdtype}: {exc!r}")
        rcode = r.rcode()
        if rcode == dns.rcode.NXDOMAIN:
            return []
        if rcode != dns.rcode.NOERROR:
            raise LabError(f"{server.role} ({server.address}) answered {dns.rcode.to_text(rcode)} for {name} {rdtype}")
        owner = qname
        for _ in range(10):
            rrset = r.get_rrset(r.answer, owner, dns.rdataclass.IN, qtype)
            if rrset is not None:
                return sorted(rd.to_text() for rd in rrset)
            cname = r.get_rrset(r.answer, owner, dns.rdataclass.IN, dns.rdatatype.CNAME)
            if cname is None:
                break
            owner = cname[0].target
        if not r.answer and qtype == dns.rdatatype.NS and not r.flags & dns.flags.AA:
            rrset = r.get_rrset(r.authority, qname, dns.rdataclass.IN, dns.rdatatype.NS)
            if rrset is not None:
                return sorted(rd.to_text() for rd in rrset)
        return []

    def serial(self, server: BindServer, zone: str) -> int:
        values = self.query(server, zone, "SOA")
        if not values:
            raise LabError(f"{server.role} ({server.address}) has no SOA for {zone}")
        return int(values[0].split()[2])

    def axfr(self, server: BindServer, zone: str, *, signed: bool = True) -> list[str]:
        """The zone's records as text lines (AXFR over TCP, with the TSIG key unless ``signed=False``).
        A refused transfer raises ``dns.xfr.TransferError``."""
        kw = {"keyring": self.keyring, "keyname": self.tsig_name} if signed else {}
        lines = []
        for message in dns.query.xfr(server.address, zone, port=server.port, timeout=5, lifetime=10,
                                     relativize=False, **kw):
            for rrset in message.answer:
                lines.extend(rrset.to_text().splitlines())
        return lines

    # -- changing the world -----------------------------------------------------------------------------

    def _name(self, zone: str, name: str) -> dns.name.Name:
        zone = zone.rstrip(".")
        if name in ("@", "", zone, zone + "."):
            return dns.name.from_text(zone)
        if name.endswith(".") or name.endswith("." + zone):
            return dns.name.from_text(name)
        return dns.name.from_text(f"{name}.{zone}")

    def change(self, zone: str, name: str, rdtype: str, values: list[str], ttl: int = 3600) -> None:
        """Someone changed it meanwhile: replace an RRset on the primary out of band (a TSIG-signed update;
        no values deletes it), then wait until the secondary serves the same serial (unless it is held or
        stopped). ``name`` is relative to ``zone`` or absolute."""
        update = dns.update.UpdateMessage(zone, keyring=self.keyring, keyname=self.tsig_name)
        owner = self._name(zone, name)
        if values:
            update.replace(owner, ttl, rdtype, *values)
        else:
            update.delete(owner, rdtype)
        try:
            response = dns.query.tcp(update, self.primary.address, port=self.primary.port, timeout=5)
        except (dns.exception.DNSException, OSError) as exc:
            raise LabError(f"the lab's update of {owner} {rdtype} did not reach the primary: {exc!r}")
        if response.rcode() != dns.rcode.NOERROR:
            raise LabError(f"the primary refused the lab's update of {owner} {rdtype}: "
                           f"{dns.rcode.to_text(response.rcode())}")
        if not self._held and zone.rstrip(".").lower() not in self._stale and self.secondary.running:
            self._wait_until(lambda: self.serial(self.primary, zone) == self.serial(self.secondary, zone),
                             f"the secondary to transfer {zone}", self.secondary)

    def _wait_until(self, condition, what: str, server: BindServer, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if condition():
                    return
            except LabError:
                pass
            time.sleep(0.02)
        raise LabError(f"timed out waiting for {what}\n{_excerpt(server)}")

    def refuse_updates(self, zone: str | None = None) -> None:
        """The primary answers updates of ``zone`` (default: every zone) with REFUSED, as when the key is not
        allowed to update it."""
        if zone and zone.rstrip(".").lower() not in self.domains:
            raise ValueError(f"{zone}: not a zone of this lab ({', '.join(self.domains)})")
        self._refused |= {zone.rstrip(".").lower()} if zone else set(self.domains)
        self._reconfigure(self.primary)

    def allow_updates(self) -> None:
        self._refused = set()
        self._reconfigure(self.primary)

    def hold_secondary(self) -> None:
        """The secondary stops taking transfers: it keeps answering with what it has, serials fall behind."""
        self._held = True
        self._reconfigure(self.secondary)

    def release_secondary(self) -> None:
        """The secondary takes transfers again (stale zones too) and catches up at once (this returns when it
        has)."""
        self._held = False
        self._stale = set()
        self._reconfigure(self.secondary)
        for domain in self.domains:
            self.rndc(self.secondary, "retransfer", domain)
        self._wait_until(self._serials_agree, "the secondary to catch up", self.secondary)

    def _reconfigure(self, server: BindServer) -> None:
        self._write_conf(server)
        if server.running:
            self.rndc(server, "reconfig")

    def flush_resolver(self) -> None:
        """Empty the resolver's cache (it already keeps nothing longer than MAX_TTL_WAIT seconds)."""
        self.rndc(self.resolver, "flush")

    def stop(self, server: BindServer) -> None:
        """Stop one server: its address then answers nothing on port 53."""
        if server.process is not None:
            server.process.stop()
            server.process = None

    def start(self, server: BindServer) -> None:
        """Start a stopped server again; returns when it answers (a secondary: when it has caught up)."""
        if server.running:
            return
        self._write_conf(server)
        self._launch(server)
        if server is self.secondary and not self._held and self.primary.running:
            # A secondary loaded from its files refreshes only when its refresh timer says; NOTIFYs sent while
            # it was down are lost. Ask it to check now, as an operator would after an outage.
            self._wait_ready([server], checks=[lambda d=d: self._answers_soa(server, d) for d in self.domains])
            for domain in self.domains:
                self.rndc(server, "refresh", domain)
        self._wait_ready([server])

    # -- the project file -------------------------------------------------------------------------------

    def dns_section(self, ws: Path) -> dict:
        """The ``dns:`` mapping of migration.yaml for this lab; writes the TSIG secret to ws/secrets/tsig."""
        secrets_dir = ws / "secrets"
        secrets_dir.mkdir(parents=True, exist_ok=True)
        secrets_dir.chmod(0o700)
        path = secrets_dir / "tsig"
        path.touch(mode=0o600, exist_ok=True)
        path.chmod(0o600)
        path.write_text(self.tsig_secret + "\n")
        return {
            "nameservers": [{"address": self.primary.address, "primary": True},
                            {"address": self.secondary.address}],
            "tsig": {"name": self.tsig_name, "algorithm": self.tsig_algorithm, "secret": "file:secrets/tsig"},
            "resolvers": [{"address": self.resolver.address}],
            "cutover_ttl": 60,
            "propagation_timeout": 20,
            "max_ttl_wait": MAX_TTL_WAIT,
            "targets": {
                "mx": ["10 mx1.mail.gov.bz", "20 mx2.mail.gov.bz"],
                "spf_include": "_spf.mail.gov.bz",
                "dmarc": "v=DMARC1; p=quarantine; rua=mailto:dmarc-reports@mail.gov.bz",
                "dkim_selector": DKIM_SELECTOR,
                "dkim_key": DKIM_KEY,
                "autodiscover": "autodiscover.mail.gov.bz",
                "imap_host": "imap.mail.gov.bz",
                "submission_host": "smtp.mail.gov.bz",
            },
        }

    # -- lifecycle --------------------------------------------------------------------------------------

    def cleanup(self) -> None:
        if hasattr(self, "parent"):  # else it never got its addresses
            for server in self.servers:
                self.stop(server)
        self._release_addresses()
        shutil.rmtree(self.root, ignore_errors=True)
        if self in _live:
            _live.remove(self)

    def __enter__(self) -> DnsLab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


def _excerpt(server: BindServer, lines: int = 30) -> str:
    """The end of named's log without its start-up banner and the query log, which would crowd out why."""
    text = server.log_text().splitlines()
    start = next((i for i, line in enumerate(text) if "loading configuration from" in line), 0)
    kept = [line for line in text[start:] if " query: " not in line]
    if not kept:
        return f"(named wrote nothing to {server.log_path})"
    return f"--- named log ({server.role}, {server.log_path}) ---\n" + "\n".join(kept[-lines:])


def _holds(check) -> bool:
    try:
        return bool(check())
    except LabError:  # not answering yet, or not what it will answer
        return False


def _exchange(q: dns.message.Message, server: BindServer, *, timeout: float) -> dns.message.Message:
    """One query over UDP (TCP when the answer is truncated). The UDP socket is connected, so a server
    that is not listening fails at once (ECONNREFUSED from the ICMP reply) instead of after ``timeout``."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.connect((server.address, server.port))
        response = dns.query.udp(q, server.address, port=server.port, timeout=timeout, sock=sock)
    if response.flags & dns.flags.TC:
        response = dns.query.tcp(q, server.address, port=server.port, timeout=timeout)
    return response


def _run_as() -> tuple[int | None, int | None]:
    """As root, named drops to the bind account (Debian's bind9 creates it); otherwise it runs as us."""
    if os.geteuid() != 0:
        return None, None
    try:
        account = pwd.getpwnam("bind")
    except KeyError:
        return None, None
    return account.pw_uid, account.pw_gid


def start_dns_lab(domains: list[str], *, records: dict[str, list[str]] | None = None,
                  stale_secondary: list[str] | None = None) -> DnsLab:
    """Start the four servers for these ministry domains (names under gov.bz) and return when each answers:
    every zone's SOA on the primary and the secondary (same serial), the resolver resolving mx1.mail.gov.bz.

    ``records`` adds lines per zone (a ministry domain, "gov.bz" or "."), in zone-file syntax with names
    relative to the zone; a line replaces the default RRset of the same name and type; ``{net}`` in a line is
    the lab's /24 (``{net}.14`` is an address of the lab where nothing listens). ``stale_secondary`` names
    zones the secondary serves from a copy one serial behind and never transfers (its primary is a port
    where nothing listens), as a zone file copied by hand would be; :meth:`DnsLab.release_secondary` mends
    it. A server that will not start (a broken line, say) raises :class:`LabError` with its log."""
    which("named", "bind9")
    tried: set[str] = set()
    for attempt in range(3):
        lab = DnsLab(domains, records, stale_secondary)
        _live.append(lab)
        try:
            lab._take_addresses(tried)
            lab._start_all()
            return lab
        except AddressTaken:
            # Another program took one of our addresses between the check and named's bind: another /24.
            tried.add(lab.prefix)
            lab.cleanup()
            if attempt == 2:
                raise
        except BaseException:
            lab.cleanup()
            raise
    raise AssertionError("unreachable")


@atexit.register
def _cleanup_all() -> None:
    for lab in list(_live):
        with contextlib.suppress(Exception):
            lab.cleanup()
