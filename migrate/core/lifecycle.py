"""The per-mailbox lifecycle of a migration, and which mailboxes each pass of a wave run works on.

    new → planned → prestaging → prestaged → delta-synced → final-synced → cut-over → done
                         └──────────┴─────────────┴──→ failed (with reason; a retry resumes)
    skipped: left out on purpose (flagged ``skip`` in the user list)

``new`` is a mailbox the user lists name but no wave of the plan holds. A failed mailbox remembers the
state it had reached (``prior_state``), so the next run of its wave retries exactly the pass that failed.

Passes: ``prestage`` copies the existing mail in advance (planned → prestaging → prestaged); ``delta``
brings a prestaged mailbox up to date (→ delta-synced) and may be skipped; ``final`` is the last copy in
the maintenance window (prestaged or delta-synced → final-synced). Prestage cannot be skipped: a final
pass that had to copy a whole mailbox would not fit its window. Re-running a pass works only on the
mailboxes that have not completed it (that is how a run resumes); ``again`` repeats a delta or final
pass on mailboxes that already completed it. ``cut-over`` and ``done`` belong to the DNS cut-over; see
:func:`mark_cut_over` and :func:`mark_done`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

from migrate.core.errors import UsageError

if TYPE_CHECKING:
    from migrate.core.store import MailboxRow, Store

NEW = "new"
PLANNED = "planned"
PRESTAGING = "prestaging"
PRESTAGED = "prestaged"
DELTA_SYNCED = "delta-synced"
FINAL_SYNCED = "final-synced"
CUT_OVER = "cut-over"
DONE = "done"
FAILED = "failed"
SKIPPED = "skipped"

#: The forward states in order; ``failed`` and ``skipped`` stand beside them.
ORDER = (NEW, PLANNED, PRESTAGING, PRESTAGED, DELTA_SYNCED, FINAL_SYNCED, CUT_OVER, DONE)
STATES = (*ORDER, FAILED, SKIPPED)
PASSES = ("prestage", "delta", "final")

#: What each pass needs a mailbox to have reached, and where it leaves it.
PASS_FROM = {"prestage": (NEW, PLANNED, PRESTAGING), "delta": (PRESTAGED,), "final": (PRESTAGED, DELTA_SYNCED)}
PASS_TARGET = {"prestage": PRESTAGED, "delta": DELTA_SYNCED, "final": FINAL_SYNCED}
#: Mail counts as completely moved from here on (the report's "done").
MOVED = (FINAL_SYNCED, CUT_OVER, DONE)

#: A phone extension's lifecycle: new → planned → provisioned (the hosted platform's file was exported) →
#: registered (its SIP checks passed) → cut-over (its DIDs route to the hosted platform) → done; or failed
#: with the reason. Each change is an event ``extension/<dial plan>:<number>``.
PROVISIONED = "provisioned"
REGISTERED = "registered"
EXTENSION_ORDER = (NEW, PLANNED, PROVISIONED, REGISTERED, CUT_OVER, DONE)
#: A phone counts as on the hosted platform from here on.
PHONE_MOVED = (CUT_OVER, DONE)


#: A domain's DNS cut-over (``dns_domains.state``): unchanged → prepared (TTLs lowered) → baselined → switched →
#: propagated → cut-over (its mailboxes advanced) → done (the last delta copied) → settled (TTLs raised again);
#: or, rolled back: restored (the baseline is back on every server; the copy back of mail follows) →
#: rolled-back, or rollback-incomplete (the primary refused some RRsets: listed, with an nsupdate script).
#: Where a domain's cut-over has not begun: the gate applies.
DOMAIN_NOT_BEGUN = ("unchanged", "prepared", "rolled-back")
#: Where the records have (or may have) been changed: what a rollback undoes.
DOMAIN_BEGUN = ("baselined", "switched", "propagated", "cut-over", "done", "settled")
#: Where the domain's MX points at the central host.
DOMAIN_SWITCHED = ("switched", "propagated", "cut-over", "done", "settled")
#: A rollback that has begun and not finished: running the rollback again finishes it.
DOMAIN_ROLLING_BACK = ("restored", "rollback-incomplete")


def level(mailbox: MailboxRow) -> str:
    """The forward state a mailbox has reached: its state, or for a failed one the state before it failed."""
    if mailbox.state == FAILED:
        return mailbox.prior_state or PLANNED
    return mailbox.state


def extension_level(ext) -> str:
    """The forward state an extension (an ExtensionRow) has reached: its state, or for a failed one the state
    before it failed."""
    return ext.prior_state if ext.state == FAILED and ext.prior_state else ext.state


def extension_reached(ext, state: str) -> bool:
    """Whether an extension has reached ``state`` (or gone past it) in :data:`EXTENSION_ORDER`."""
    level = extension_level(ext)
    return level in EXTENSION_ORDER and EXTENSION_ORDER.index(level) >= EXTENSION_ORDER.index(state)


#: A state change as the store's events record it: ``"<before> -> <after>"``, then ``": <reason>"`` if any.
STATE_EVENT = re.compile(r"^(\S+) -> (\S+)(?:: (.*))?$", re.DOTALL)


def rank(state: str) -> int:
    return ORDER.index(state) if state in ORDER else -1


T = TypeVar("T")


@dataclass(frozen=True)
class Eligibility(Generic[T]):
    """Which of a wave's items (mailboxes, extensions, domains) one step works on, and why each other one is
    left out."""

    work: list[T]
    #: (item, why): already past this step; not a problem.
    done: list[tuple[T, str]]
    #: (item, why): cannot take this step yet (not prestaged, flagged skip); the run exits 1.
    blocked: list[tuple[T, str]]


def eligibility(mailboxes: list[MailboxRow], pass_name: str, *, again: bool = False) -> Eligibility[MailboxRow]:
    if pass_name not in PASSES:
        raise UsageError(f"unknown pass {pass_name!r}; passes: {', '.join(PASSES)}")
    target = PASS_TARGET[pass_name]
    accepted = PASS_FROM[pass_name] + ((target,) if again else ())
    work, done, blocked = [], [], []
    for m in mailboxes:
        reached = level(m)
        if m.state == SKIPPED or "skip" in m.flags:
            blocked.append((m, "flagged skip in the user list: not migrated"))
        elif reached in accepted:
            work.append(m)
        elif rank(reached) >= rank(target):
            done.append((m, f"already {reached}"))
        else:
            blocked.append((m, f"not prestaged yet ({reached}): run --pass prestage first"))
    return Eligibility(work, done, blocked)


def retry_state(pass_name: str, reached: str) -> str:
    """The ``prior_state`` of a mailbox that failed ``pass_name`` having reached ``reached``: where a retry of
    that pass resumes. A failed repeat (``again``) of a pass the mailbox had completed falls back to the
    state the pass starts from, so that the next run of the pass retries it."""
    if pass_name == "prestage":
        return PRESTAGING
    if rank(reached) >= rank(PASS_TARGET[pass_name]):
        return PASS_FROM[pass_name][-1]
    return reached


def next_pass(mailboxes: list[MailboxRow]) -> str | None:
    """The earliest pass that still has work in the wave (the default of ``run WAVE``); None when none has."""
    for pass_name in PASSES:
        if eligibility(mailboxes, pass_name).work:
            return pass_name
    return None


def mark_cut_over(store: Store, mailbox: MailboxRow, detail: str | None = None) -> None:
    """The domain's mail now reaches the central host. Only a final-synced mailbox can be cut over."""
    if mailbox.state != FINAL_SYNCED:
        raise UsageError(f"{mailbox.email} is {mailbox.state}; only a final-synced mailbox can be cut over")
    store.set_mailbox_state(mailbox.id, CUT_OVER, detail)


def mark_done(store: Store, mailbox: MailboxRow, detail: str | None = None) -> None:
    """The migration of this mailbox is finished and checked after its cut-over."""
    if mailbox.state != CUT_OVER:
        raise UsageError(f"{mailbox.email} is {mailbox.state}; only a cut-over mailbox can be marked done")
    store.set_mailbox_state(mailbox.id, DONE, detail)
