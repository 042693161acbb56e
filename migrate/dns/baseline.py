"""A domain's records before its switch, kept for people and for the rollback: the RRsets the change set
replaces (always), and the whole zone by AXFR signed with TSIG where the primary allows it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from migrate.core.errors import MigrateError
from migrate.dns.changes import ChangeSet
from migrate.dns.client import DnsClient


@dataclass(frozen=True)
class Baseline:
    changeset: ChangeSet
    #: The whole zone as zone-file text, or None when the transfer was refused (``note`` says why).
    zone_text: str | None
    note: str | None = None

    def rrsets(self) -> list[dict[str, Any]]:
        """The RRsets the change set replaces, as they were (for the store's ``baseline``)."""
        return [rrset.to_dict() for rrset in self.changeset.before()]

    def file_text(self, header: str = "") -> str:
        """What the baseline file holds: the zone by AXFR, else the replaced RRsets as zone-file lines."""
        head = "".join(f"; {line}\n" for line in header.splitlines())
        if self.zone_text is not None:
            return head + self.zone_text.rstrip("\n") + "\n"
        lines = [f"; no zone transfer: {self.note}", "; the RRsets the cut-over replaces, as they were:"]
        for rrset in self.changeset.before():
            lines += rrset.zone_lines()
        return head + "\n".join(lines) + "\n"


def take_baseline(client: DnsClient, changeset: ChangeSet) -> Baseline:
    """The baseline of ``changeset``'s zone: AXFR where allowed; a refused transfer is a note, not an error
    (the change set's "before" side is the baseline the rollback needs)."""
    try:
        return Baseline(changeset, client.axfr(changeset.zone))
    except MigrateError as exc:
        return Baseline(changeset, None, exc.message)
