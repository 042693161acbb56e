"""Radicale for the lab: the data centre's CalDAV/CardDAV server, as ``central.dav`` reaches it.

One :class:`RadicaleServer` is one ``radicale`` (Debian's package) in the foreground as our child, on
127.0.0.1 and a free port, with its own configuration, htpasswd file and collection storage in a temporary
directory, and HTTPS with a certificate from the lab CA (as every lab server has). Logins are checked against
the htpasswd file (plain entries: Radicale 3.1 from Debian reads bcrypt and md5 only with passlib, which the
package does not pull in; the file is 0600 in a 0700 directory). Rights are ``authenticated``: the migration
account may write every user's collections, as the data centre's groupware admin account does.

A server that does not start raises :class:`LabError` with the end of its log, so a test fails saying why.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from secrets import token_hex

from tests.lab.base import LOOPBACK, LabError, ServerProcess, free_port, lab_tempdir, wait_for_port, which
from tests.lab.certs import CertFiles, lab_ca


class RadicaleServer:
    def __init__(self, *, user: str = "dav-migrate", password: str | None = None, tls: bool = True) -> None:
        self.user = user
        self.password = password or f"lab-dav-{token_hex(6)}"
        self.tls = tls
        self.port = 0
        self.dir: Path | None = None
        self.process: ServerProcess | None = None
        self.cert: CertFiles | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{LOOPBACK}:{self.port}/"

    @property
    def ca_file(self) -> Path:
        return lab_ca().ca_file

    def start(self) -> RadicaleServer:
        program = which("radicale", "radicale")
        self.dir = lab_tempdir("radicale")
        private = self.dir / "private"
        private.mkdir(mode=0o700)
        htpasswd = private / "users"
        htpasswd.write_text(f"{self.user}:{self.password}\n")
        htpasswd.chmod(0o600)
        (self.dir / "collections").mkdir()
        self.port = free_port()
        server = [f"hosts = {LOOPBACK}:{self.port}"]
        if self.tls:
            self.cert = lab_ca().issue(f"radicale-{token_hex(4)}", directory=private)
            server += ["ssl = True", f"certificate = {self.cert.cert}", f"key = {self.cert.key}"]
        config = self.dir / "config"
        config.write_text("\n".join([
            "[server]", *server, "",
            "[auth]", "type = htpasswd", f"htpasswd_filename = {htpasswd}", "htpasswd_encryption = plain",
            "delay = 0", "",
            "[rights]", "type = authenticated", "",
            "[storage]", f"filesystem_folder = {self.dir / 'collections'}", "",
            "[web]", "type = none", "",
            "[logging]", "level = info", "mask_passwords = True", "",
        ]))
        log = self.dir / "radicale.log"
        self.process = ServerProcess([program, "--config", str(config)], log=log, what="radicale")
        try:
            wait_for_port(self.port, proc=self.process.proc, log=log.with_suffix(".stdout"), what="radicale")
        except LabError:
            self.stop()
            raise
        return self

    def set_password(self, password: str) -> None:
        """Change the migration account's password (Radicale reads the htpasswd file on every login)."""
        assert self.dir is not None
        self.password = password
        (self.dir / "private" / "users").write_text(f"{self.user}:{password}\n")

    def client(self):
        """A caldav client logged in as the migration account, trusting the lab CA (for tests' checks)."""
        import caldav

        return caldav.DAVClient(url=self.url, username=self.user, password=self.password,
                                ssl_verify_cert=str(self.ca_file) if self.tls else False)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None

    def cleanup(self) -> None:
        self.stop()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self) -> RadicaleServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()
