"""The DNS package's own failure: a server answered, but not with what was asked."""

from __future__ import annotations

from migrate.core.errors import RemoteError


class DnsQueryFailed(RemoteError):
    """A DNS server answered, but not with what was asked: refused, not authoritative, SERVFAIL."""
