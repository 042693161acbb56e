"""TLS material for the lab: a private CA, server certificates for 127.0.0.1, and deliberately bad ones
(self-signed, expired, issued for another name) to test that verification refuses them.

:func:`lab_ca` is the one CA of a test session (or of ``make demo``): every lab server that serves TLS by
default has a certificate from it, and workspaces name its certificate as their ``ca_file``."""

from __future__ import annotations

import atexit
import datetime as dt
import ipaddress
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class CertFiles:
    cert: Path
    key: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write(directory: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> CertFiles:
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / f"{stem}.crt", directory / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o644)  # the servers read it as their own unprivileged users; it is throwaway
    return CertFiles(cert_path, key_path)


class LabCA:
    """A throwaway certificate authority; its certificate is what project files name as ``ca_file``."""

    def __init__(self, directory: Path, name: str = "govmigrate lab CA") -> None:
        self.directory = directory
        self.key = _key()
        now = dt.datetime.now(dt.UTC)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.cert = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        self.files = _write(directory, "ca", self.cert, self.key)

    @property
    def ca_file(self) -> Path:
        return self.files.cert

    def issue(self, stem: str, names: tuple[str, ...] = ("localhost", "127.0.0.1"), *,
              days_valid: int = 365, expired: bool = False, directory: Path | None = None) -> CertFiles:
        """A server certificate signed by this CA, written to ``directory`` (default: the CA's own)."""
        key = _key()
        now = dt.datetime.now(dt.UTC)
        if expired:
            not_before, not_after = now - dt.timedelta(days=400), now - dt.timedelta(days=35)
        else:
            not_before, not_after = now - dt.timedelta(hours=1), now + dt.timedelta(days=days_valid)
        sans: list[x509.GeneralName] = []
        for name in names:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                sans.append(x509.DNSName(name))
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(self.cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                           critical=False)
            .sign(self.key, hashes.SHA256())
        )
        return _write(directory or self.directory, stem, cert, key)


_session_ca: LabCA | None = None
_session_ca_lock = threading.Lock()


def lab_ca() -> LabCA:
    """The lab CA of this process, created on first use and removed at exit."""
    global _session_ca
    with _session_ca_lock:
        if _session_ca is None:
            from tests.lab.base import lab_tempdir

            directory = lab_tempdir("ca")
            atexit.register(shutil.rmtree, directory, True)
            _session_ca = LabCA(directory)
        return _session_ca


def self_signed(directory: Path, stem: str, names: tuple[str, ...] = ("localhost", "127.0.0.1")) -> CertFiles:
    """A certificate no CA vouches for, as a ministry server set up in a hurry would have."""
    key = _key()
    now = dt.datetime.now(dt.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    sans = [x509.IPAddress(ipaddress.ip_address(n)) if n[0].isdigit() else x509.DNSName(n) for n in names]
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(key, hashes.SHA256())
    )
    return _write(directory, stem, cert, key)
