"""Exceptions and the one exit-code table of govmigrate.

Every error a user can cause is a ``MigrateError`` subclass carrying its exit code; the CLI's single
error boundary turns it into a one-line message and that code. Keep this table in sync with the
README.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from migrate.core.redaction import redact


class ExitCode(IntEnum):
    """Process exit statuses (README: "Exit codes")."""

    OK = 0
    #: The command finished, but some items failed or were skipped (a mailbox, a message, a check).
    PARTIAL = 1
    #: Usage error, invalid project file, user list or plan file.
    USAGE = 2
    #: The workspace is missing, not a workspace, or its state store cannot be used.
    WORKSPACE = 3
    #: A server the whole command depends on cannot be reached (the central host, a DNS primary).
    UNREACHABLE = 4
    #: A server the whole command depends on refused the credentials.
    AUTH = 5
    #: A wave plan is not approved, or changed since it was approved.
    NOT_APPROVED = 6
    #: Another process holds the lock for this work (a wave run, a sync of the same mailbox).
    LOCKED = 7
    #: Pre-flight checks failed before any copying started.
    PREFLIGHT = 8
    #: A DNS update was refused, or a record changed since it was read: nothing was changed.
    DNS_REFUSED = 9
    #: A DNS change was made but not every authoritative server served it before the timeout.
    DNS_PROPAGATION = 10
    #: A bug in govmigrate: an unexpected exception reached the error boundary.
    INTERNAL = 70
    #: Stopped by Ctrl-C or SIGTERM; state is consistent and re-running resumes.
    INTERRUPTED = 130
    #: The reader of stdout went away (``| head``): what shells report for a tool killed by SIGPIPE.
    BROKEN_PIPE = 141


@dataclass(frozen=True)
class Finished:
    """How a command ended, for one whose result cannot say it itself: ``partial``, some items failed or were
    skipped (exit 1); ``invalid``, a file it read has errors (exit 2). The error boundary (migrate.cli.main) reads
    ``exit_code`` off whatever a command returns."""

    partial: bool = False
    locked: bool = False
    #: An input file a person wrote (a PBX file) has errors: what could be read was still recorded (exit 2).
    invalid: bool = False

    @property
    def exit_code(self) -> ExitCode:
        if self.locked:
            return ExitCode.LOCKED
        if self.invalid:
            return ExitCode.USAGE
        return ExitCode.PARTIAL if self.partial else ExitCode.OK


@dataclass(frozen=True)
class Problem:
    """One finding in a file a person wrote: where it is and what is wrong."""

    file: str
    line: int | None
    field: str
    message: str
    severity: str = "error"  # or "warning", or "note" (worth knowing, nothing wrong)

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        field = f" {self.field}:" if self.field else ""
        return f"{where}:{field} {self.message}"


class MigrateError(Exception):
    """Base of every error govmigrate reports to its user."""

    exit_code: ExitCode = ExitCode.INTERNAL

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        # Every error a user sees or the store keeps passes the redactor here, once: a secret that slipped
        # into a message (a server echoing a line, a URL) is masked wherever the message goes.
        message = redact(message)
        super().__init__(message)
        self.message = message
        self.hint = redact(hint) if hint else hint


class UsageError(MigrateError):
    exit_code = ExitCode.USAGE


class ValidationFailed(UsageError):
    """A project file, user list or plan file has problems; all of them are listed at once."""

    def __init__(self, what: str, problems: list[Problem]) -> None:
        errors = [p for p in problems if p.severity == "error"]
        super().__init__(f"{what}: {len(errors)} problem{'s' if len(errors) != 1 else ''} found")
        self.problems = problems


class WorkspaceError(MigrateError):
    exit_code = ExitCode.WORKSPACE


class StoreError(WorkspaceError):
    """The state store cannot be opened, is newer than this program, or is corrupt."""


class SecretError(UsageError):
    """A secret reference cannot be resolved (unset variable, unreadable or unsafe file)."""


class ServerUnreachable(MigrateError):
    exit_code = ExitCode.UNREACHABLE


class AuthenticationFailed(MigrateError):
    exit_code = ExitCode.AUTH


class NotApproved(MigrateError):
    exit_code = ExitCode.NOT_APPROVED


class LockHeld(MigrateError):
    exit_code = ExitCode.LOCKED


class ClaimLost(MigrateError):
    """This process no longer holds the mailbox it was copying: its lease lapsed (the host paused, or lost the
    state store) and another host took the mailbox over. Nothing more is written for it here; the mailbox is
    given up, not failed (its new holder finishes it)."""

    exit_code = ExitCode.PARTIAL

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        #: (folder id, folder on the central host, [(src_uid, src_item, dest_uid, fingerprint, size, flags)]): a
        #: batch this process appended after it lost the mailbox, which it could not record.
        self.appended: tuple[int, str, list[tuple]] | None = None


class PreflightFailed(MigrateError):
    exit_code = ExitCode.PREFLIGHT


class DnsUpdateRefused(MigrateError):
    """The primary refused an RFC 2136 update (TSIG signature or key, a zone it is not authoritative for, an
    update policy, the zone's integrity checks): nothing was changed. ``rcode`` is what it answered, ``rrsets``
    the RRsets the update held, ``causes`` the possible causes, most likely first."""

    exit_code = ExitCode.DNS_REFUSED

    def __init__(self, message: str, *, hint: str | None = None, rcode: str = "", rrsets: list[str] | None = None,
                 causes: list[str] | None = None) -> None:
        super().__init__(message, hint=hint)
        self.rcode = rcode
        self.rrsets = rrsets or []
        self.causes = causes or []


class DnsChangedMeanwhile(DnsUpdateRefused):
    """A prerequisite failed: an RRset is no longer as it was read, so the update changed nothing.
    ``rrset`` names it ("mx health.gov.bz."), ``now`` says what it holds now."""

    def __init__(self, message: str, *, rrset: str = "", now: str = "", hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.rrset = rrset
        self.now = now


class DnsNotPropagated(MigrateError):
    """A DNS change was made, but not every authoritative server served it before the timeout."""

    exit_code = ExitCode.DNS_PROPAGATION

    def __init__(self, message: str, *, behind: list[str] | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.behind = behind or []


class DnsServerUnreachable(ServerUnreachable):
    """The DNS server a command depends on (the primary, for an update or a transfer) did not answer."""


class Interrupted(MigrateError):
    exit_code = ExitCode.INTERRUPTED


class RemoteError(MigrateError):
    """A server refused or failed one item of work (a mailbox, a folder, a message).

    These are recorded with their reason and the work goes on; a command that met any exits 1.
    ``transient`` errors are retried with back-off before they are recorded.
    """

    exit_code = ExitCode.PARTIAL
    transient = False


class TransientError(RemoteError):
    """Connection reset, BYE, timeout or throttling: worth retrying after a pause."""

    transient = True

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Throttled(RemoteError):
    """The server kept asking to back off after every wait it asked for: not retried again in this run
    (retrying sooner than the server asked would only press it harder); the next run tries again."""


class ConnectFailed(RemoteError):
    """The server could not be reached at all (refused, unreachable, DNS, timeout on connect)."""


class TlsFailed(RemoteError):
    """TLS failed: the certificate was not trusted, expired, or issued for another name."""


class LoginFailed(RemoteError):
    """The server refused the credentials (a permanent fault for that mailbox)."""


class FolderFailed(RemoteError):
    """One folder could not be read or written."""


class SyncStateInvalid(FolderFailed):
    """The server no longer accepts a stored SyncFolderItems state: sync that folder again from scratch."""
