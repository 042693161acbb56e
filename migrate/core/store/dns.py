"""The DNS cut-over of each ministry domain."""

from __future__ import annotations

import json
from typing import Any

from migrate.core.secrets import redact
from migrate.core.store.base import Row, StoreBase
from migrate.core.store.rows import (
    DnsDomainRow,
    now,
)


class DnsStore(StoreBase):
    _DNS_COLS = ("domain, wave, state, old_ttl, prepared_at, safe_after, baseline, baseline_file, changes, "
                 "switched_at, propagated_at, forced_reason, detail, ttls, restored_at, settled_at, unrestored")
    _DNS_FIELDS = frozenset(_DNS_COLS.replace(" ", "").split(",")) - {"domain"}

    @staticmethod
    def _dns(row: Row) -> DnsDomainRow:
        values = list(row)
        for i in (6, 8, 13, 16):
            values[i] = json.loads(values[i]) if values[i] else None
        return DnsDomainRow(*values)

    def dns_domain(self, domain: str) -> DnsDomainRow | None:
        rows = self._query(f"SELECT {self._DNS_COLS} FROM dns_domains WHERE domain = ?", (domain,))
        return self._dns(rows[0]) if rows else None

    def dns_domains(self) -> list[DnsDomainRow]:
        return [self._dns(r) for r in self._query(f"SELECT {self._DNS_COLS} FROM dns_domains ORDER BY domain")]

    def update_dns_domain(self, domain: str, **fields: Any) -> DnsDomainRow:
        """Create or change a domain's cut-over record; lists and dicts are stored as JSON, text redacted."""
        unknown = set(fields) - self._DNS_FIELDS
        if unknown:
            raise ValueError(f"unknown dns_domains fields: {unknown}")
        values = {k: (json.dumps(v, sort_keys=True) if isinstance(v, (list, dict)) else
                      redact(v) if isinstance(v, str) else v) for k, v in fields.items()}
        with self.tx() as c:
            c.execute("INSERT INTO dns_domains(domain, updated_at) VALUES (?, ?) ON CONFLICT(domain) DO NOTHING",
                      (domain.lower(), now()))
            if values:
                sets = ", ".join(f"{k} = ?" for k in values)
                c.execute(f"UPDATE dns_domains SET {sets}, updated_at = ? WHERE domain = ?",
                          (*values.values(), now(), domain.lower()))
        row = self.dns_domain(domain)
        assert row is not None
        return row
