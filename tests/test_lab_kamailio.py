"""The Kamailio lab itself, against real Kamailio, with subscriber tables written here by hand (independently of
govmigrate's export): it starts on its own address, registers over UDP, TCP and TLS with sipsak, refuses wrong
passwords and unknown users, reloads its tables without a restart, serves certificates a verifying client
accepts or refuses, and fails with its log when it cannot start."""

from __future__ import annotations

import hashlib
import socket
import ssl
import subprocess
from pathlib import Path

import pytest

from tests.lab import kamailio
from tests.lab.base import LabError
from tests.lab.kamailio import (
    KamailioConfig,
    KamailioServer,
    digest_register,
    sip_request,
    sipsak,
    start_kamailio,
)

pytestmark = pytest.mark.lab

DOMAIN = kamailio.DOMAIN
SUBSCRIBER = "id(int,auto) username(string) domain(string) password(string,null) ha1(string) ha1b(string)\n"
DBALIASES = "id(int,auto) alias_username(string) alias_domain(string) username(string) domain(string)\n"


def tables(directory: Path, users: dict[str, str], aliases: dict[str, str] | None = None, *,
           domain: str = DOMAIN, algorithm=hashlib.md5) -> Path:
    """A subscriber (and dbaliases) table written by hand: HA1 values only, no clear password."""
    directory.mkdir(parents=True, exist_ok=True)
    rows = []
    for n, (user, password) in enumerate(users.items(), 1):
        ha1 = algorithm(f"{user}:{domain}:{password}".encode()).hexdigest()
        ha1b = algorithm(f"{user}@{domain}:{domain}:{password}".encode()).hexdigest()
        rows.append(f"{n}:{user}:{domain}::{ha1}:{ha1b}\n")
    (directory / "subscriber").write_text(SUBSCRIBER + "".join(rows))
    alias_rows = [f"{n}:{did}:{domain}:{user}:{domain}\n" for n, (did, user) in enumerate((aliases or {}).items(), 1)]
    (directory / "dbaliases").write_text(DBALIASES + "".join(alias_rows))
    return directory


@pytest.fixture
def server():
    server = start_kamailio()
    yield server
    server.cleanup()


@pytest.fixture
def provisioned(server, tmp_path):
    server.load(tables(tmp_path / "db", {"2001": "Correct-Horse-Battery-9", "2002": "second-phone-secret"},
                       {"+5012223001": "2001"}))
    return server


def test_it_starts_on_a_loopback_address_of_its_own_with_the_standard_ports(server):
    assert server.address.startswith("127.56.") and server.address.endswith(".1")
    assert server.endpoints() == {"udp": (server.address, 5060), "tcp": (server.address, 5060),
                                  "tls": (server.address, 5061)}
    for transport in ("udp", "tcp", "tls"):
        assert server.options(f"sip:{server.address}", transport=transport).status == 200
    assert server.startup_seconds is not None and server.startup_seconds < kamailio.START_TIMEOUT
    print(f"kamailio started in {server.startup_seconds:.2f}s")


def test_two_labs_run_at_once_on_different_addresses():
    first, second = start_kamailio(), start_kamailio(KamailioConfig(name="second"))
    try:
        assert first.prefix != second.prefix
        assert first.options(f"sip:{first.address}").status == 200
        assert second.options(f"sip:{second.address}").status == 200
    finally:
        first.cleanup()
        second.cleanup()


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
def test_sipsak_registers_a_provisioned_extension_after_a_qop_auth_challenge(provisioned, transport):
    run = sipsak(provisioned, "2001", "Correct-Horse-Battery-9", transport=transport)
    assert run.registered, run.output
    assert run.statuses == [401, 200]
    assert f'Digest realm="{DOMAIN}"' in run.output and 'qop="auth"' in run.output
    assert len(provisioned.contacts("2001")) == 1
    assert provisioned.contacts("2002") == []


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
def test_a_wrong_password_is_refused_with_403_after_the_challenge(provisioned, transport):
    run = sipsak(provisioned, "2001", "not-the-password", transport=transport)
    assert not run.registered
    assert run.statuses == [401, 403]
    assert provisioned.contacts("2001") == []
    assert "govlab auth -2 user=2001" in provisioned.log_text()  # auth_db: invalid password


def test_an_unknown_extension_is_refused_with_403_after_the_challenge(provisioned):
    run = sipsak(provisioned, "2999", "Correct-Horse-Battery-9")
    assert run.statuses == [401, 403]
    assert "govlab auth -3 user=2999" in provisioned.log_text()  # auth_db: no such user


def test_another_extensions_password_does_not_register_this_one(provisioned):
    run = sipsak(provisioned, "2001", "second-phone-secret")
    assert run.statuses == [401, 403]


def test_an_unregister_removes_the_binding(provisioned):
    assert sipsak(provisioned, "2001", "Correct-Horse-Battery-9").registered
    assert provisioned.contacts("2001")
    assert sipsak(provisioned, "2001", "Correct-Horse-Battery-9", expires=0).registered
    assert provisioned.contacts("2001") == []


def test_loading_new_tables_takes_effect_at_once_without_a_restart(server, tmp_path):
    pid = server.process.proc.pid
    server.load(tables(tmp_path / "a", {"2001": "first-password-1"}))
    assert sipsak(server, "2001", "first-password-1").registered
    # Within the same second: db_text compares whole seconds, which the lab's load must get past.
    server.load(tables(tmp_path / "b", {"2002": "second-password-2"}))
    assert sipsak(server, "2001", "first-password-1").statuses == [401, 403]
    assert sipsak(server, "2002", "second-password-2").registered
    assert server.process.proc.pid == pid


def test_a_did_alias_leads_to_its_extension(provisioned):
    reply = provisioned.options(f"sip:+5012223001@{DOMAIN}")
    assert reply.status == 200 and reply.header("X-Govlab-Target") == "2001"
    assert provisioned.options(f"sip:+5012229999@{DOMAIN}").status == 404


def test_a_verifying_client_accepts_the_registrar_and_refuses_the_wrong_name_and_the_expired_certificate(server):
    reply = sip_request("OPTIONS", f"sip:{DOMAIN}", server.address, server.tls_port, transport="tls",
                        ca_file=server.ca_file, server_name=DOMAIN)
    assert reply.status == 200
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        sip_request("OPTIONS", f"sip:{DOMAIN}", server.wrong_name_address, server.tls_port, transport="tls",
                    ca_file=server.ca_file, server_name=DOMAIN)
    with pytest.raises(ssl.SSLCertVerificationError, match="expired"):
        sip_request("OPTIONS", f"sip:{DOMAIN}", server.expired_address, server.tls_port, transport="tls",
                    ca_file=server.ca_file, server_name=DOMAIN)
    # The wrong-name listener is the same registrar: only its certificate is wrong.
    assert server.options(f"sip:{DOMAIN}", transport="tls", address=server.wrong_name_address).status == 200


def test_openssl_verifies_the_same_way(server):
    def s_client(address: str) -> subprocess.CompletedProcess:
        return subprocess.run(["openssl", "s_client", "-connect", f"{address}:{server.tls_port}",
                               "-CAfile", str(server.ca_file), "-verify_hostname", DOMAIN, "-verify_return_error",
                               "-brief"], input=b"", capture_output=True, timeout=30)

    assert s_client(server.address).returncode == 0
    wrong = s_client(server.wrong_name_address)
    assert wrong.returncode != 0 and b"hostname mismatch" in wrong.stderr.lower()
    expired = s_client(server.expired_address)
    assert expired.returncode != 0 and b"expired" in expired.stderr.lower()


def test_a_sha256_server_authenticates_sha256_ha1_values(tmp_path):
    server = start_kamailio(KamailioConfig(name="sha256", algorithm="SHA-256"))
    try:
        server.load(tables(tmp_path / "db", {"2001": "Correct-Horse-Battery-9"}, algorithm=hashlib.sha256))
        replies = digest_register(server, "2001", "Correct-Horse-Battery-9", algorithm="SHA-256")
        assert [r.status for r in replies] == [401, 200]
        assert "algorithm=SHA-256" in replies[0].header("WWW-Authenticate")
        assert [r.status for r in digest_register(server, "2001", "wrong-password", algorithm="SHA-256")] == [401, 403]
    finally:
        server.cleanup()


def test_a_silent_transport_times_out_while_the_others_answer(server):
    server.drop("udp")
    with pytest.raises(socket.timeout):
        server.options(f"sip:{server.address}", transport="udp", timeout=0.5)
    assert server.options(f"sip:{server.address}", transport="tcp").status == 200
    assert server.options(f"sip:{server.address}", transport="tls").status == 200
    server.drop()
    assert server.options(f"sip:{server.address}", transport="udp").status == 200


def test_a_busy_registrar_answers_503_with_retry_after(provisioned):
    provisioned.busy(7)
    reply = provisioned.options(f"sip:{provisioned.address}")
    assert (reply.status, reply.header("Retry-After")) == (503, "7")
    assert sipsak(provisioned, "2001", "Correct-Horse-Battery-9").statuses == [503]
    provisioned.busy(None)
    assert sipsak(provisioned, "2001", "Correct-Horse-Battery-9").registered


def test_a_configuration_kamailio_refuses_fails_with_kamailios_words():
    broken = KamailioServer(KamailioConfig(name="broken", route_prelude=["this is not kamailio;"]))
    with pytest.raises(LabError, match=r"(?s)refused its configuration.*parse error"):
        broken.start()
    assert not broken.root.exists()


def test_a_server_that_exits_during_start_up_fails_with_its_log(server):
    class Squatter(KamailioServer):
        def _claim_prefix(self) -> None:
            self.prefix = server.prefix  # a running lab's addresses: Kamailio cannot bind them

    squatter = Squatter(KamailioConfig(name="squatter"))
    with pytest.raises(LabError, match=r"(?s)exited with status.*kamailio log.*Address already in use"):
        squatter.start()
    assert not squatter.root.exists()
    assert server.options(f"sip:{server.address}").status == 200


def test_cleanup_frees_the_address_and_removes_every_file():
    server = start_kamailio()
    prefix, root = server.prefix, server.root
    server.cleanup()
    assert not root.exists()
    assert kamailio._ports_free(prefix)
    lock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        lock.bind(f"\0govlab-sip-{prefix}")  # the lab's lock on the /24 is gone with it
    finally:
        lock.close()


def test_the_dns_lab_leads_to_the_registrar_as_rfc_3263_resolves(provisioned):
    from tests.lab.bind import start_dns_lab

    dns_lab = start_dns_lab(["health.gov.bz"], records={"gov.bz": provisioned.dns_records()})
    try:
        resolver = dns_lab.resolver
        naptr = dns_lab.query(resolver, DOMAIN, "NAPTR")
        assert naptr == [f'10 0 "s" "SIPS+D2T" "" _sips._tcp.{DOMAIN}.', f'20 0 "s" "SIP+D2T" "" _sip._tcp.{DOMAIN}.',
                         f'30 0 "s" "SIP+D2U" "" _sip._udp.{DOMAIN}.']
        for service, transport in (("_sips._tcp", "tls"), ("_sip._tcp", "tcp"), ("_sip._udp", "udp")):
            [srv] = dns_lab.query(resolver, f"{service}.{DOMAIN}", "SRV")
            _, _, port, target = srv.split()
            [address] = dns_lab.query(resolver, target, "A")
            reply = sip_request("OPTIONS", f"sip:{DOMAIN}", address, int(port), transport=transport,
                                ca_file=provisioned.ca_file, server_name=DOMAIN)
            assert reply.status == 200
        # No NAPTR or SRV: the domain's A record and the standard port reach the same registrar.
        assert dns_lab.query(resolver, DOMAIN, "A") == [provisioned.address]
        assert sip_request("OPTIONS", f"sip:{DOMAIN}", provisioned.address, 5060).status == 200
        assert dns_lab.query(resolver, f"wrong-name.{DOMAIN}", "A") == [provisioned.wrong_name_address]
        assert dns_lab.query(resolver, f"expired.{DOMAIN}", "A") == [provisioned.expired_address]
    finally:
        dns_lab.cleanup()
