"""What every part of one mailbox's pass works with: both sides, the store, the options and the report, and
the few things they all do (progress, the stop check, flags as the central host gets them)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from migrate.core.config import Source
from migrate.core.errors import ClaimLost
from migrate.core.progress import ProgressEvent, ProgressSink
from migrate.core.ratelimit import RateLimiter
from migrate.core.store import MailboxRow, Store
from migrate.mailbox.central import Destination, LazyDestination
from migrate.mailbox.fingerprint import Fingerprinter, fingerprint, stable
from migrate.mailbox.keywords import for_central
from migrate.mailbox.source_imap import ImapSourceMailbox
from migrate.mailbox.sync.reports import Item, MailboxReport, Stopped, SyncOptions


@dataclass
class PassContext:
    store: Store
    options: SyncOptions
    mailbox: MailboxRow
    source: Source
    src: Any                 # ImapSourceMailbox or EwsMailbox
    dest: Destination | LazyDestination
    report: MailboxReport
    progress: ProgressSink
    stop: threading.Event
    #: Held while a large message is streamed: one at a time across all workers.
    large: threading.Semaphore
    limiter: RateLimiter | None
    max_keyword: int
    #: Set when this host is found to have lost the mailbox (its lease taken over): the pass stops at once.
    lost: threading.Event = field(default_factory=threading.Event)
    #: Before an APPEND, the batch's lease must still hold for this long (the longest an APPEND may take).
    append_budget: float = 0.0
    #: Keywords shortened to the central host's limit in this pass → the names they stand for.
    long_names: dict[str, str] = field(default_factory=dict)
    is_ews: bool = field(init=False)
    #: Exchange builds an item's MIME again on every read: its copies are matched by the fingerprint that
    #: leaves out the header fields it rebuilds (migrate.mailbox.fingerprint.stable).
    fingerprint: Fingerprinter = field(init=False)

    def __post_init__(self) -> None:
        self.is_ews = not isinstance(self.src, ImapSourceMailbox)
        self.fingerprint = stable if self.is_ews else fingerprint

    @property
    def dry(self) -> bool:
        return self.options.dry_run

    def central_flags(self, flags) -> tuple[tuple[str, ...], bool]:
        return for_central(flags, self.max_keyword, self.long_names)

    def advance(self, messages: int, nbytes: int) -> None:
        self.progress(ProgressEvent("advance", self.mailbox.email, messages=messages, bytes=nbytes))

    def found(self, items: list[Item]) -> None:
        """A folder (or a chunk of an Exchange folder) was read: this much is to be copied from it."""
        if items:
            self.progress(ProgressEvent("grow", self.mailbox.email, messages=len(items),
                                        bytes=sum(i.size for i in items)))

    def check_stop(self) -> None:
        """At a batch boundary: stop on request, or when this host lost the mailbox."""
        self.check_lost()
        if self.stop.is_set():
            raise Stopped()

    def check_lost(self) -> None:
        if self.lost.is_set():
            raise ClaimLost("another host took this mailbox over (this host's lease lapsed); it is given up here")

    def hold(self) -> None:
        """Before a change on the central host (flags, an expunge): this host must still hold the mailbox."""
        self.check_lost()
        hold = getattr(self.store, "hold", None)
        if hold is not None:
            hold()

    def before_append(self) -> None:
        """Right before an APPEND: the lease the batch's pending record extended still holds long enough for the
        APPEND to finish (a host paused since then may have lost it, and must not write). A stop request waits
        for the batch: it is recorded pending already."""
        self.check_lost()
        deadline = getattr(self.store, "deadline", None)
        if deadline is not None and time.monotonic() + self.append_budget > deadline:
            raise ClaimLost("this host paused while it copied: its lease on the mailbox may have lapsed, so the "
                            "batch is not appended; the mailbox is given up here")

    def dest_status(self, dest_name: str) -> dict[str, int]:
        if self.dry and dest_name not in self.dest.folders():
            return {"UIDNEXT": 1, "UIDVALIDITY": 0, "MESSAGES": 0}
        return self.dest.status(dest_name)
