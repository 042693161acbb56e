"""Every step a wave can run, in one table: its name → the module and class that implement it.

A new kind of step is one module (a :class:`migrate.waves.step.Step` subclass) and one line here; the runner
(:mod:`migrate.waves.runner`) gives it approval, the wave's lock, ``--force --reason``, the run record and its
events, and ``govmigrate run WAVE --step NAME`` runs it. A step's module is imported when the step is first
asked for, so that a nightly sync pass does not load the DNS and SIP code.
"""

from __future__ import annotations

import importlib
import threading
from dataclasses import dataclass

from migrate.core.errors import UsageError
from migrate.waves.step import Step


@dataclass(frozen=True)
class Entry:
    module: str
    cls: str
    #: What the class is built with (a sync pass's name).
    args: tuple[str, ...] = ()
    #: What it works on, and the command that runs it (for people; docs/architecture.md has the same table).
    about: str = ""


STEPS: dict[str, Entry] = {
    "prestage": Entry("sync_pass", "SyncPass", ("prestage",), "mailboxes: run WAVE --pass prestage"),
    "delta": Entry("sync_pass", "SyncPass", ("delta",), "mailboxes: run WAVE --pass delta"),
    "final": Entry("sync_pass", "SyncPass", ("final",), "mailboxes: run WAVE --pass final"),
    "prestage-queued": Entry("queued", "QueuedPass", ("prestage",), "mailboxes: run WAVE --pass prestage --workers"),
    "delta-queued": Entry("queued", "QueuedPass", ("delta",), "mailboxes: run WAVE --pass delta --workers"),
    "final-queued": Entry("queued", "QueuedPass", ("final",), "mailboxes: run WAVE --pass final --workers"),
    "provision": Entry("provision", "Provision", (), "extensions: voip export --wave WAVE --format F"),
    "sip-check": Entry("phones", "SipCheck", (), "extensions: sip check --wave WAVE"),
    "cutover": Entry("dns_switch", "DnsSwitch", (), "mailboxes of the cut-over domains: cutover WAVE"),
    "phones": Entry("phones", "PhoneRegistration", (), "extensions: cutover WAVE (after its domains)"),
    "sip-confirm": Entry("phones", "PhoneConfirm", (), "extensions: sip confirm --wave WAVE"),
    "rollback": Entry("rollback", "DnsRollback", (), "domains: dns rollback --wave WAVE"),
    "copy-back": Entry("copy_back", "CopyBackStep", (), "mailboxes of rolled-back domains: run WAVE --step copy-back"),
    "settle": Entry("settle", "DnsSettle", (), "domains: dns settle --wave WAVE"),
}

_built: dict[str, Step] = {}
_lock = threading.Lock()


def step(name: str) -> Step:
    """The step called ``name`` (a usage error names the others)."""
    entry = STEPS.get(name)
    if entry is None:
        raise UsageError(f"unknown step {name!r}; steps: {', '.join(STEPS)}")
    with _lock:
        if name not in _built:
            module = importlib.import_module(f"migrate.waves.{entry.module}")
            _built[name] = getattr(module, entry.cls)(*entry.args)
        return _built[name]


def sync_step(pass_name: str, *, queued: bool = False) -> Step:
    """The step of a sync pass, run here or queued for workers."""
    return step(f"{pass_name}-queued" if queued else pass_name)
