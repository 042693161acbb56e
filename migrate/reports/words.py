"""Plain words for what reports show: every state, step, run result and event in words a project manager or a
change board reads without the manual, and counts with their noun in the right number.

The codes stay where a record needs them (JSON, CSV, the terminal's ``report --wave``); the HTML reports show
these words, with the code beside them where a sysadmin would look it up.
"""

from __future__ import annotations

from migrate.core import lifecycle

#: A mailbox's lifecycle state.
MAILBOX_STATES = {
    lifecycle.NEW: "in no wave yet",
    lifecycle.PLANNED: "planned, nothing copied yet",
    lifecycle.PRESTAGING: "copying in advance",
    lifecycle.PRESTAGED: "copied in advance",
    lifecycle.DELTA_SYNCED: "copied in advance and brought up to date",
    lifecycle.FINAL_SYNCED: "final copy done, waiting for the switch",
    lifecycle.CUT_OVER: "switched: new mail arrives centrally",
    lifecycle.DONE: "done",
    lifecycle.FAILED: "failed",
    lifecycle.SKIPPED: "left out on purpose",
}

#: A phone extension's lifecycle state.
PHONE_STATES = {
    lifecycle.NEW: "in no wave yet",
    lifecycle.PLANNED: "planned",
    lifecycle.PROVISIONED: "set up on the hosted platform",
    lifecycle.REGISTERED: "registers on the hosted platform",
    lifecycle.CUT_OVER: "calls ring on the hosted platform",
    lifecycle.DONE: "done",
    lifecycle.FAILED: "failed",
}

#: A domain's DNS cut-over state.
DOMAIN_STATES = {
    "unchanged": "not switched yet",
    "prepared": "TTLs lowered, not switched yet",
    "baselined": "records saved, switch starting",
    "switched": "switched, waiting for every server",
    "propagated": "switched on every server",
    "cut-over": "switched; its mailboxes advanced",
    "done": "done",
    "rolled-back": "rolled back",
}

#: A wave's steps (runs).
STEPS = {
    "prestage": "advance copy (prestage pass)",
    "delta": "catch-up copy (delta pass)",
    "final": "final copy (final pass)",
    "prestage-queued": "advance copy by worker hosts",
    "delta-queued": "catch-up copy by worker hosts",
    "final-queued": "final copy by worker hosts",
    "provision": "phones set up on the hosted platform",
    "sip-check": "SIP checks of the hosted platform",
    "cutover": "DNS cut-over of the wave's domains",
    "phones": "phones registered on the hosted platform",
    "sip-confirm": "phones' numbers confirmed",
    "rollback": "DNS rolled back",
}

#: How a run ended.
RUN_RESULTS = {
    None: "running",
    "ok": "finished",
    "partial": "finished, some items failed",
    "failed": "stopped by an error",
    "interrupted": "interrupted (resumable)",
    "killed": "killed (resumed by the next run)",
}

#: A wave's events.
EVENTS = {
    "approve": "approved",
    "approval-lapsed": "approval lapsed",
    "run-start": "run started",
    "run-finish": "run finished",
    "run-failed": "run stopped by an error",
    "run-interrupted": "run interrupted",
    "run-killed": "earlier run found killed",
    "gate-refused": "refused by its checks",
    "gate-forced": "checks overridden (--force)",
    "preflight-failed": "refused by the pre-flight",
    "phone step-refused": "phone step refused",
    "sip confirm-refused": "SIP confirmation refused",
    "queued": "queued for worker hosts",
}

#: A SIP check's result.
CHECK_RESULTS = {"pass": "passed", "note": "passed, with a note", "fail": "failed", "warn": "warning",
                 "skip": "not checked"}


def word(table: dict, code: str | None) -> str:
    """The plain word for a code, else the code with dashes as spaces (an unknown code is still readable)."""
    if code in table:
        return table[code]
    return (code or "").replace("-", " ").replace("_", " ")


def step_word(name: str | None) -> str:
    return word(STEPS, name)


def plural(count: int, noun: str, many: str | None = None) -> str:
    """``1 mailbox``, ``3 mailboxes``, with thousands separators: ``5,000 mailboxes``."""
    if many is None:
        many = noun + ("es" if noun.endswith(("x", "s", "ch", "sh")) else "s")
    return f"{count:,} {noun if count == 1 else many}"


def extension_text(key: str) -> str:
    """An extension key ``<dial plan>:<number>`` as people say it: ``2002 (dial plan gov)``."""
    plan, _, number = key.partition(":")
    return f"{number} (dial plan {plan})" if number else key
