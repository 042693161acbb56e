"""How long a wave's copy will take: its size over the throughput the state store has measured.

Every mailbox the sync engine copies records its bytes and seconds per source (``throughput``). A
source's rate is one mailbox stream's measured rate times the streams the wave will run in parallel
(its connection limit, the central host's, and its mailbox count), capped by the source's bandwidth.
Before 1 MB of a source has been measured, the programme-wide measurement is used, and before any,
the project file's ``waves.default_rate_mb_s`` (taken as the rate of a whole wave). Sources of a mixed
wave (the pilot) are added up as if copied one after the other, which errs on the long side. The
estimate is for copying the wave's mail once (the prestage pass); delta and final passes copy only what
changed since.
"""

from __future__ import annotations

from dataclasses import dataclass

from migrate.core.config import Project
from migrate.core.store import Store

#: Measurements below this many bytes say more about log-in overhead than about the link.
MIN_MEASURED_BYTES = 1_000_000


@dataclass(frozen=True)
class Rate:
    bytes_per_second: float
    basis: str   # "measured" | "default"

    @property
    def mb_s(self) -> float:
        return self.bytes_per_second / 1e6


@dataclass(frozen=True)
class Estimate:
    hours: float
    mb_s: float
    basis: str           # measured | default | mixed
    description: str     # one line for people

    def fits(self, window_hours: float) -> bool:
        return self.hours <= window_hours


class Rates:
    """The throughput known to the store, read once."""

    def __init__(self, project: Project, store: Store) -> None:
        self.project = project
        self.default_bps = project.config.waves.default_rate_mb_s * 1e6
        self.central_connections = project.config.central.connections
        self.per_source: dict[str, float] = {}
        for source in project.config.sources:
            _msgs, nbytes, seconds = store.throughput(source.id)
            if nbytes >= MIN_MEASURED_BYTES and seconds > 0:
                self.per_source[source.id] = nbytes / seconds
        _msgs, nbytes, seconds = store.throughput()
        self.overall = nbytes / seconds if nbytes >= MIN_MEASURED_BYTES and seconds > 0 else None

    def for_source(self, source_id: str, mailboxes: int) -> Rate:
        source = self.project.source(source_id)
        cap = float(source.bandwidth_bps) if source.bandwidth_bps else float("inf")
        stream = self.per_source.get(source_id, self.overall)
        if stream is None:
            return Rate(min(self.default_bps, cap), "default")
        parallel = max(1, min(source.connections, self.central_connections, mailboxes))
        return Rate(min(stream * parallel, cap), "measured")


def estimate(rates: Rates, sizes: dict[str, tuple[int, int]]) -> Estimate:
    """``sizes``: source id → (mailboxes, bytes) of the wave."""
    seconds = 0.0
    bases = set()
    total = 0
    for source_id, (count, nbytes) in sizes.items():
        if not count:
            continue
        rate = rates.for_source(source_id, count)
        bases.add(rate.basis)
        seconds += nbytes / rate.bytes_per_second
        total += nbytes
    basis = bases.pop() if len(bases) == 1 else ("mixed" if bases else "default")
    mb_s = (total / seconds / 1e6) if seconds > 0 else rates.default_bps / 1e6
    hours = seconds / 3600
    words = {"measured": "measured in earlier runs", "default": "the default rate; no run measured yet",
             "mixed": "partly measured, partly the default rate"}[basis]
    return Estimate(hours, mb_s, basis, f"{format_hours(hours)} at {mb_s:.1f} MB/s ({words})")


def format_hours(hours: float) -> str:
    if hours < 1 / 60:
        return "under a minute"
    if hours < 1:
        return f"about {round(hours * 60)} min"
    return f"about {hours:.1f} h"
