"""The wave planner: cut the inventoried mailboxes into a pilot and waves by ministry, within the limits.

* The pilot comes first: users flagged ``pilot`` in the user lists, or, if nobody is, the
  ``waves.pilot.count`` smallest mailboxes of ``waves.pilot.from_source`` (of every source when unset).
* Then each ministry (source) in project-file order gets its own waves. A wave holds one ministry only,
  at most ``max_mailboxes`` mailboxes and ``max_gb`` of mail. Domains are packed whole (largest first,
  first fit), so a domain is split only when it alone exceeds a wave, and then over as few waves as
  the limits allow.
* VIPs (flag ``vip``) of a ministry are kept together in its last wave, marked ``white_glove``; that is
  also the wave that completes the ministry's domains, so VIPs switch once, with their domain. A VIP
  flagged ``pilot`` too stays with the VIPs.
* Mailboxes flagged ``skip``, and those the inventory could not measure, are left out with the reason.
* A domain is cut over in the wave that holds its last mailbox (see :func:`cutover_domains`).

This module decides membership only; :mod:`migrate.plans.generate` turns the result into plan files.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from migrate.core.config import Project, WavePolicy
from migrate.plans.catalog import MailboxInfo
from migrate.plans.model import PILOT, wave_id


@dataclass
class PlannedWave:
    id: str
    title: str
    kind: str                      # pilot | ministry
    white_glove: bool
    mailboxes: list[MailboxInfo]
    #: With ``plan generate --replace``: a wave that had started, kept exactly as it was.
    kept: bool = False


@dataclass
class Proposal:
    waves: list[PlannedWave]
    excluded: list[tuple[str, str]]               # (email, reason)
    warnings: list[str] = field(default_factory=list)


def exclusion_reason(m: MailboxInfo) -> str | None:
    if "skip" in m.flags:
        return "flagged skip in the user list"
    if m.measured is None:
        return "not measured yet: run govmigrate inventory mail"
    if m.measured is False:
        return f"inventory failed: {m.inventory_error or 'no reason recorded'}"
    return None


class _Bin:
    def __init__(self, max_mailboxes: int, max_bytes: float, vip: bool = False) -> None:
        self.items: list[MailboxInfo] = []
        self.bytes = 0
        self.vip = vip
        self.max_mailboxes = max_mailboxes
        self.max_bytes = max_bytes

    def fits(self, count: int, nbytes: int) -> bool:
        if not self.items:
            return count <= self.max_mailboxes and nbytes <= self.max_bytes
        return len(self.items) + count <= self.max_mailboxes and self.bytes + nbytes <= self.max_bytes

    def add(self, items: Iterable[MailboxInfo]) -> None:
        for m in items:
            self.items.append(m)
            self.bytes += m.size or 0


def _size(items: list[MailboxInfo]) -> int:
    return sum(m.size or 0 for m in items)


def _fill(bins: list[_Bin], items: list[MailboxInfo], make: Callable[[], _Bin]) -> None:
    """Mailboxes one by one into the last bin, opening a new one when it is full (a bin takes at least one)."""
    for m in items:
        if not bins or (bins[-1].items and not bins[-1].fits(1, m.size or 0)):
            bins.append(make())
        bins[-1].add([m])


def pack_ministry(members: list[MailboxInfo], policy: WavePolicy) -> list[_Bin]:
    """One ministry's mailboxes into as few waves as the limits allow, domains whole where they fit,
    VIPs together in the last wave(s)."""
    max_bytes = policy.max_gb * 1e9

    def regular() -> _Bin:
        return _Bin(policy.max_mailboxes, max_bytes)

    def vip() -> _Bin:
        return _Bin(policy.max_mailboxes, max_bytes, vip=True)

    vip_bins: list[_Bin] = []
    _fill(vip_bins, sorted((m for m in members if "vip" in m.flags), key=lambda m: m.email.lower()), vip)
    by_domain: dict[str, list[MailboxInfo]] = defaultdict(list)
    for m in members:
        if "vip" not in m.flags:
            by_domain[m.domain].append(m)
    bins: list[_Bin] = []
    for domain in sorted(by_domain, key=lambda d: (-_size(by_domain[d]), -len(by_domain[d]), d)):
        group = sorted(by_domain[domain], key=lambda m: m.email.lower())
        target = next((b for b in bins + vip_bins if b.items and b.fits(len(group), _size(group))), None)
        if target is not None:
            target.add(group)
        elif regular().fits(len(group), _size(group)):
            fresh = regular()
            fresh.add(group)
            bins.append(fresh)
        else:  # bigger than a wave: split over as few fresh waves as the limits allow
            bins.append(regular())
            _fill(bins, group, regular)
    return bins + vip_bins


def choose_pilot(candidates: list[MailboxInfo], project: Project, warnings: list[str]) -> list[MailboxInfo]:
    policy = project.config.waves.pilot
    flagged = [m for m in candidates if policy.flag in m.flags]
    both = [m for m in flagged if "vip" in m.flags]
    for m in both:
        warnings.append(f"{m.email} is flagged both pilot and vip: planned with the VIPs of {m.ministry}")
    flagged = [m for m in flagged if "vip" not in m.flags]
    if flagged or not policy.count:
        return flagged
    pool = [m for m in candidates if "vip" not in m.flags
            and (policy.from_source is None or m.source_id == policy.from_source)]
    pool.sort(key=lambda m: (m.size or 0, m.email.lower()))
    chosen = pool[:policy.count]
    if chosen:
        where = f"source {policy.from_source}" if policy.from_source else "all sources"
        warnings.append(f"nobody is flagged {policy.flag!r}: the pilot is the {len(chosen)} smallest "
                        f"mailbox(es) of {where}")
    return chosen


def propose(project: Project, mailboxes: list[MailboxInfo], *, kept: list[PlannedWave] = ()) -> Proposal:
    """Plan ``mailboxes`` (those of sources in the project file); ``kept`` waves stay as they are, first."""
    policy = project.config.waves
    warnings: list[str] = []
    taken = {m.email.lower() for w in kept for m in w.mailboxes}
    excluded: list[tuple[str, str]] = []
    candidates: list[MailboxInfo] = []
    for m in mailboxes:
        if m.email.lower() in taken:
            continue
        reason = exclusion_reason(m)
        if reason:
            excluded.append((m.email, reason))
        else:
            candidates.append(m)
    waves: list[PlannedWave] = list(kept)
    numbers = [int(w.id.split("-")[1]) for w in kept if w.id.startswith("wave-") and w.id[5:].isdigit()]
    next_number = max(numbers, default=0) + 1
    if not any(w.id == PILOT for w in kept):
        pilot = choose_pilot(candidates, project, warnings)
        if pilot:
            waves.insert(0, PlannedWave(PILOT, "Pilot", "pilot", False, pilot))
            chosen = {m.email.lower() for m in pilot}
            candidates = [m for m in candidates if m.email.lower() not in chosen]
            if len(pilot) > policy.max_mailboxes or _size(pilot) > policy.max_gb * 1e9:
                warnings.append(f"the pilot ({len(pilot)} mailboxes, {_size(pilot) / 1e9:.1f} GB) exceeds the wave "
                                "limits; it is kept whole")
    by_source: dict[str, list[MailboxInfo]] = defaultdict(list)
    for m in candidates:
        by_source[m.source_id].append(m)
    for source in project.config.sources:
        members = by_source.get(source.id, [])
        if not members:
            continue
        bins = pack_ministry(members, policy)
        for i, b in enumerate(bins):
            title = source.ministry if len(bins) == 1 else f"{source.ministry} ({i + 1} of {len(bins)})"
            waves.append(PlannedWave(wave_id(next_number), title, "ministry", b.vip, list(b.items)))
            next_number += 1
            if len(b.items) == 1 and (b.bytes > policy.max_gb * 1e9):
                warnings.append(f"{b.items[0].email} alone ({b.bytes / 1e9:.1f} GB) exceeds the wave limit of "
                                f"{policy.max_gb:g} GB: it has a wave to itself")
    return Proposal(waves, excluded, warnings)


def cutover_domains(order: list[tuple[str, list[str]]]) -> dict[str, list[str]]:
    """(wave id, mailbox addresses) in run order → wave id → the domains whose last mailbox is in it."""
    last: dict[str, str] = {}
    for wave, emails in order:
        for email in emails:
            last[email.rsplit("@", 1)[1].lower()] = wave
    out: dict[str, list[str]] = {wave: [] for wave, _ in order}
    for domain, wave in last.items():
        out[wave].append(domain)
    return {wave: sorted(domains) for wave, domains in out.items()}
