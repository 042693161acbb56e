"""Typed rows: what the store hands out (frozen dataclasses; never a secret, only whether one exists)."""

from __future__ import annotations

import getpass
import os
import socket
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

STAMP = "%Y-%m-%dT%H:%M:%SZ"


def now() -> str:
    return datetime.now(UTC).strftime(STAMP)


def age_s(stamp: str | None, at: float) -> float | None:
    """Seconds from the store's stamp ``stamp`` to ``at`` (seconds since the epoch); None for no stamp, one not
    written by :func:`now`, or one later than ``at`` (a clock or a store gone back in time proves nothing)."""
    if not stamp:
        return None
    try:
        age = at - datetime.strptime(stamp, STAMP).replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None
    return age if age >= 0 else None


def actor() -> str:
    try:
        return os.environ.get("GOVMIGRATE_ACTOR") or getpass.getuser()
    except Exception:
        return f"uid{os.getuid()}"


def host() -> str:
    """This migration host's name, as status and reports show who copied what (GOVMIGRATE_HOST overrides)."""
    return os.environ.get("GOVMIGRATE_HOST") or socket.gethostname()


def worker_id() -> str:
    """This process, as a lease or claim names its holder: host:pid."""
    return f"{host()}:{os.getpid()}"


@dataclass(frozen=True)
class Event:
    id: int
    at: str
    actor: str
    object: str
    action: str
    detail: str


@dataclass(frozen=True)
class SourceRow:
    """A source (one ministry's mail server) as the user lists registered it."""

    id: str
    ministry: str
    kind: str
    domains: list[str]


@dataclass(frozen=True)
class ProbeRow:
    """A source server's last probe: ``detail`` says what was found (reachability, TLS, capabilities, login)."""

    ok: bool
    error: str | None
    detail: dict[str, Any]
    probed_at: str


@dataclass(frozen=True)
class InventoryRow:
    """A mailbox with its latest inventory measurement (None fields where not measured)."""

    mailbox_id: int
    source_id: str
    email: str
    login: str
    display_name: str
    flags: list[str]
    #: True measured completely, False failed or incomplete, None not measured.
    ok: bool | None
    error: str | None
    messages: int | None
    bytes: int | None
    largest: int | None
    oldest: str | None
    newest: str | None
    quota_used: int | None
    quota_limit: int | None
    folder_errors: int | None
    measured_at: str | None


@dataclass(frozen=True)
class InventoryFolderRow:
    """One folder of a measured mailbox; ``kind`` is mail, or what an Exchange folder holds instead."""

    name: str
    special_use: str | None
    messages: int | None
    bytes: int | None
    error: str | None
    kind: str


@dataclass(frozen=True)
class MailboxRow:
    id: int
    source_id: str
    email: str
    login: str
    display_name: str
    flags: frozenset[str]
    state: str
    state_reason: str | None
    wave: str | None
    last_sync_at: str | None
    last_sync_result: str | None
    src_messages: int | None
    src_bytes: int | None
    copied_messages: int
    copied_bytes: int
    failed_messages: int
    #: When ``state`` is failed: the lifecycle state reached before, from which a retry resumes.
    prior_state: str | None = None
    #: The migration host whose sync of it last ended (several hosts can work one plan).
    last_sync_host: str | None = None
    #: When a sync last read its rules, out-of-office and sharing in full (None: never, or the last read failed).
    settings_read_at: str | None = None
    #: The central host's STORAGE quota (bytes used, limit or None for none) as the last sync that logged in
    #: there left it, and when (None: no sync has read it).
    central_quota_used: int | None = None
    central_quota_limit: int | None = None
    central_quota_at: str | None = None


@dataclass(frozen=True)
class WaveRow:
    """A wave as the store knows it: as last generated or approved (``doc``), and who approved which hash."""

    id: str
    position: int
    plan_file: str
    plan_hash: str | None
    approved_by: str | None
    approved_at: str | None
    state: str
    doc: dict[str, Any] | None
    recorded_at: str | None


@dataclass(frozen=True)
class FolderState:
    id: int
    mailbox_id: int
    source_name: str
    dest_name: str
    source_uidvalidity: int | None
    dest_uidvalidity: int | None
    source_uidnext: int | None
    source_modseq: int | None
    source_messages: int | None
    source_bytes: int | None
    sync_state: str | None
    subscribed: bool
    note: str | None
    last_synced_at: str | None
    #: The destination folder's UIDNEXT as of the last pass: messages at or above it are news to the store.
    dest_uidnext: int | None = None
    #: The source's own id of the folder where it has one (EWS FolderId), which a rename keeps.
    source_key: str | None = None


@dataclass(frozen=True)
class GroupwareRecord:
    """One calendar item or contact as last copied (or refused), keyed by its UID."""

    kind: str
    uid: str
    src_item: str
    change_key: str
    href: str | None
    etag: str | None
    state: str
    error: str | None


@dataclass(frozen=True)
class MessageRecord:
    src_uid: int | None
    src_item: str | None
    dest_uid: int | None
    fingerprint: str
    size: int
    flags: str
    state: str
    dest_uidnext_before: int | None
    error: str | None
    #: When the source message was found gone from its folder while its copy stays on the central host, until
    #: a pass moves the copy (the message arrived in another folder) or removes it (a pass carrying deletions).
    vanished_at: str | None = None
    #: A pending move: the folder record and source key (as text) of the copy this record's message is moved
    #: from on the central host.
    moved_from_folder: int | None = None
    moved_from_key: str | None = None
    #: A message not copied that someone accepted leaving behind (why: a final pass forced with this reason).
    accepted: str | None = None


@dataclass(frozen=True)
class NotCopiedRow:
    """A message not copied, with why (``error``): refused or unexportable, or not migrated by policy."""

    folder: str
    src_uid: int | None
    src_item: str | None
    size: int
    error: str | None
    #: Why someone accepted leaving it behind (None: still outstanding).
    accepted: str | None = None


@dataclass(frozen=True)
class SettingRow:
    """One mail rule, out-of-office reply, shared folder's access entry or delegate of a mailbox: as the
    inventory found it (phase ``inventory``: to-move | cannot-move | unknown) or as a sync left it (phase
    ``sync``: moved | held | not-moved | failed). ``name`` "*" with state unknown or failed: the whole kind
    could not be read, ``reason`` says why."""

    mailbox_id: int
    phase: str
    kind: str
    name: str
    state: str
    reason: str = ""
    target: str | None = None
    digest: str | None = None
    updated_at: str | None = None


@dataclass(frozen=True)
class GroupwareSummaryRow:
    """A mailbox's calendar items or contacts (``kind``): where they went, how many the source held, copied
    and failed."""

    mailbox_id: int
    email: str
    kind: str
    location: str
    source_items: int
    last_sync_at: str | None
    copied: int
    failed: int


@dataclass(frozen=True)
class RunRow:
    """One run of a wave's step; ``pass_name`` is the ``pass`` column (a Python keyword)."""

    id: int
    wave: str | None
    pass_name: str | None
    started_at: str
    finished_at: str | None
    #: None while it runs.
    result: str | None
    mailboxes: int
    messages: int
    bytes: int
    seconds: float | None
    actor: str | None
    pid: int | None
    detail: str
    #: The migration host it ran on (None for runs recorded before hosts were).
    host: str | None
    #: The approval (``approvals.id``) in force when it started; None when the wave had none.
    approval_id: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """The run under its columns' names (``pass``, not ``pass_name``), for JSON."""
        return {("pass" if key == "pass_name" else key): value for key, value in asdict(self).items()}


@dataclass(frozen=True)
class ApprovalRow:
    """One approval of a wave: who approved which plan hash when, what the wave held then (``doc``; None for an
    approval recorded before govmigrate kept it), and when and why it stopped covering the wave."""

    id: int
    wave: str
    plan_hash: str
    plan_file: str
    approved_by: str
    approved_at: str
    doc: dict[str, Any] | None
    lapsed_at: str | None
    lapse_reason: str | None
    #: What changed in the wave since the approval before this one (None: the first, or not recorded).
    changes: str | None


@dataclass(frozen=True)
class VerificationRow:
    """A mailbox's last verification (``govmigrate verify``): counts of each kind of difference."""

    mailbox_id: int
    verified_at: str
    deep: bool
    matches: bool
    source_messages: int
    dest_messages: int
    missing: int
    duplicates: int
    flag_mismatches: int
    date_mismatches: int
    content_mismatches: int
    folder_problems: int
    error: str | None

    @property
    def differences(self) -> int:
        return (self.missing + self.duplicates + self.flag_mismatches + self.date_mismatches
                + self.content_mismatches + self.folder_problems)


@dataclass(frozen=True)
class DnsDomainRow:
    """A ministry domain's DNS cut-over as far as it went (see migrate.waves.dns_switch)."""

    domain: str
    wave: str | None
    state: str
    old_ttl: int | None
    prepared_at: str | None
    safe_after: str | None
    baseline: list[dict[str, Any]] | None
    baseline_file: str | None
    changes: list[dict[str, Any]] | None
    switched_at: str | None
    propagated_at: str | None
    forced_reason: str | None
    detail: str | None
    #: "name TYPE" → the TTL the RRset had before ``dns prepare`` lowered it (``dns settle`` raises it back).
    ttls: dict[str, int] | None = None
    #: When a rollback had the baseline back on every server (the copy back of mail then follows).
    restored_at: str | None = None
    settled_at: str | None = None
    #: What a rollback could not put back, with why, and the files it wrote for the operator.
    unrestored: dict[str, Any] | None = None


@dataclass(frozen=True)
class ReverseFolder:
    """A central folder copied back to the ministry server, and where it goes there (see
    migrate.mailbox.sync.reverse). Named as the sync engine's parts expect a folder's state: its source is the
    central folder, its destination the ministry's."""

    id: int
    mailbox_id: int
    central_name: str
    ministry_name: str
    folder_id: int | None
    central_uidvalidity: int | None
    dest_uidvalidity: int | None
    dest_uidnext: int | None
    last_copied_at: str | None

    @property
    def source_name(self) -> str:
        return self.central_name

    @property
    def dest_name(self) -> str:
        return self.ministry_name


@dataclass(frozen=True)
class ExtensionRow:
    """A PBX extension as the store knows it (never its secrets: only whether it has them)."""

    id: int
    source_id: str
    dial_plan: str
    number: str
    name: str
    tech: str | None
    transport: str | None
    callerid: str | None
    outbound_cid: str | None
    voicemail_box: str | None
    voicemail_email: str | None
    pin_present: bool
    secret_present: bool
    dids: list[str]
    device: str | None
    origins: list[str]
    extra: dict[str, str]
    mailbox_id: int | None
    link: str | None
    wave: str | None
    state: str
    state_reason: str | None
    prior_state: str | None
    seen_at: str
    #: The PBX file errors that hold it (``file:line: field: message``); empty: not held.
    held: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.dial_plan}:{self.number}"


@dataclass(frozen=True)
class KeptSecretRow:
    """A phone's kept SIP password and voicemail PIN, sealed (``migrate.core.sealed``): never in clear here."""

    extension: str
    state: str
    generation: int
    sip_secret: str | None
    pin: str | None
    key_id: str
    made_at: str


@dataclass(frozen=True)
class SipCheckRow:
    """One stored SIP check of the hosted platform (``data``: what it measured, for later steps)."""

    id: int
    run_id: int | None
    wave: str | None
    subject: str
    kind: str
    result: str
    detail: str
    data: dict[str, Any]
    checked_at: str


@dataclass(frozen=True)
class Fence:
    """One sync's hold on a mailbox: the token it took (``mailboxes.fence``), and, where the mailbox lock is a
    lease several hosts see, that lease and its holder. A write made under a token that is no longer the
    mailbox's is refused (:class:`migrate.core.errors.ClaimLost`)."""

    mailbox_id: int
    token: int
    lease: str | None = None
    holder: str | None = None
    #: How long each batch extends the lease: more than one batch can take, so that nobody can take the
    #: mailbox over while a batch this holder recorded as pending is still on its way.
    margin: float = 0.0


@dataclass(frozen=True)
class OrphanRow:
    """A copy on the central host that a host which had lost the mailbox appended and could not record."""

    id: int
    mailbox_id: int
    folder_id: int
    dest_uid: int
    src_uid: int | None
    src_item: str | None
    fingerprint: str
    size: int
    flags: str
    holder: str
