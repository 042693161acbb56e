"""``inventory phones``: read every ministry PBX's files, record each extension in the store, and tie it to
its mail user.

A bad row or section of a file is left out with an error naming its file, line and field; the rest of the file is
taken, and the extension the error concerns is recorded *held* (it is neither exported nor cut over until the
file is fixed or the operator overrides it). Extensions a later inventory no longer finds are dropped while
nothing has happened to them yet, and reported if something has. Secrets never reach the store: only whether
an extension has a SIP secret and a voicemail PIN.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from migrate.core.config import Project, Source
from migrate.core.errors import Problem, UsageError
from migrate.core.fanout import fanout
from migrate.core.registry import register_users
from migrate.core.store import ExtensionRow, Store, now
from migrate.voip.export import ExportError
from migrate.voip.link import Link, Linker
from migrate.voip.model import Extension, PbxInventory

log = logging.getLogger(__name__)


@dataclass
class PhoneInventory:
    """What one ``inventory phones`` read and recorded."""

    sources: dict[str, PbxInventory] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    #: "<dial plan>:<number>" → how it was linked (or why not).
    links: dict[str, Link] = field(default_factory=dict)
    #: Keys no longer in the PBX files: dropped (``forgotten``) or kept because they had moved on (``stale``).
    forgotten: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)

    def extensions(self) -> list[Extension]:
        return [e for inv in self.sources.values() for e in inv.extensions]


def pbx_sources(project: Project, source_ids: list[str] | None = None) -> list[Source]:
    """The sources with a pbx: section (those asked for, all by default)."""
    chosen = [project.source(s) for s in source_ids] if source_ids else list(project.config.sources)
    with_pbx = [s for s in chosen if s.pbx is not None]
    if source_ids and len(with_pbx) < len(chosen):
        missing = [s.id for s in chosen if s.pbx is None]
        raise UsageError(f"no pbx: section for source(s) {', '.join(missing)} in {project.path.name}",
                         hint="add the PBX's files under the source's pbx: inputs (govmigrate init writes an example)")
    return with_pbx


def read_all(project: Project, sources: list[Source]) -> tuple[dict[str, PbxInventory], list[Problem]]:
    """Read the sources' PBX files (and, for the duplicate check, every other source sharing a dial plan with
    them); a number two ministries of one dial plan define stays with the one listed first (held) and is left
    out of the other."""
    from migrate.voip.pbx import check_dial_plans, read_pbx

    plans = {project.config.dial_plan(s) for s in sources}
    related = [s for s in project.config.sources if s.pbx is not None and project.config.dial_plan(s) in plans]
    inventories = fanout(related, lambda s: read_pbx(project, s), workers=4, name="pbx")
    by_source = {inv.source_id: inv for inv in inventories}
    # The same number in two ministries sharing a dial plan: the later source loses it, the earlier one holds it
    # (check_dial_plans adds the problems to both sources' own lists).
    check_dial_plans(inventories, project)
    problems = [p for s in sources for p in by_source[s.id].problems]
    return {s.id: by_source[s.id] for s in sources}, problems


def run_phone_inventory(project: Project, store: Store, source_ids: list[str] | None = None) -> PhoneInventory:
    sources = pbx_sources(project, source_ids)
    if not sources:
        raise UsageError(f"no source in {project.path.name} has a pbx: section",
                         hint="list each ministry's PBX files under its source's pbx: inputs")
    register_users(project, store, [s.id for s in sources])
    result = PhoneInventory()
    result.sources, result.problems = read_all(project, sources)
    started = now()
    linker = Linker(store.mailboxes())
    for source in sources:
        inventory = result.sources[source.id]
        for ext in inventory.extensions:
            if ext.link_email:
                ext.extra = {**ext.extra, "link_email": ext.link_email}
            ext_id = store.upsert_extension(ext, seen_at=started)
            link, problems = linker.link(ext)
            result.problems += problems
            result.links[ext.key] = link
            store.link_extension(ext_id, link.mailbox.id if link.mailbox else None, link.how)
        result.forgotten += store.forget_extensions(source.id, unseen_since=started)
        result.stale += [e.key for e in store.extensions(source_id=source.id) if e.seen_at < started]
        linked = sum(1 for e in inventory.extensions if result.links[e.key].mailbox is not None)
        errors = sorted({p.file for p in inventory.problems if p.severity == "error"})
        held = [e.key for e in inventory.extensions if e.held]
        store.add_event(f"source/{source.id}", "phones",
                        f"{len(inventory.extensions)} extensions, {linked} linked to a user"
                        + (f"; errors in {', '.join(errors)}" if errors else "")
                        + (f"; held: {', '.join(held)}" if held else ""))
    return result


def current_extensions(project: Project, rows: list[ExtensionRow]) -> tuple[dict[str, Extension], list[str]]:
    """The wave's extensions as the PBX files have them now (with their secrets and what holds them), and the
    files' errors (as ``file:line: message``). Refuses, naming each, those the files no longer give (an extension
    removed since the inventory, or one another ministry now takes)."""
    source_ids = sorted({r.source_id for r in rows})
    inventories, problems = read_all(project, [project.source(s) for s in source_ids])
    current = {e.key: e for inv in inventories.values() for e in inv.extensions}
    errors = [str(p) for p in problems if p.severity == "error"]
    missing = [r.key for r in rows if r.key not in current]
    if missing:
        raise ExportError(f"{len(missing)} extension(s) of the wave are not in the PBX files as they are now: "
                          f"{', '.join(missing)}{errors_text(errors)}; nothing was written",
                          hint="fix the files (govmigrate inventory phones lists every problem) or take the "
                               "extensions out of the wave")
    return {r.key: current[r.key] for r in rows}, errors


def errors_text(errors: list[str]) -> str:
    if not errors:
        return ""
    more = f" and {len(errors) - 5} more" if len(errors) > 5 else ""
    return f" (the PBX files have errors: {'; '.join(errors[:5])}{more})"


def held_now(project: Project, rows: list[ExtensionRow]) -> dict[str, list[str]]:
    """Extension key → the errors in the PBX files as they are now that hold it (only those held)."""
    if not rows:
        return {}
    sources = [project.source(s) for s in sorted({r.source_id for r in rows})]
    inventories, _problems = read_all(project, [s for s in sources if s.pbx is not None])
    wanted = {r.key for r in rows}
    return {e.key: list(e.held) for inv in inventories.values() for e in inv.extensions if e.key in wanted and e.held}
