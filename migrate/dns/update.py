"""RFC 2136 UPDATE of a change set: one message over TCP to the primary, signed with TSIG, that changes
everything or nothing.

Prerequisites make it safe against people: every RRset it replaces or deletes must still hold exactly the
data that was read (value-dependent prerequisite, RFC 2136 §2.4.2), and every RRset it creates must still
be absent (§2.4.3). If anything changed meanwhile, the server changes nothing and
:class:`DnsChangedMeanwhile` names the RRset and what it holds now. Any other refusal (REFUSED, NOTAUTH,
SERVFAIL) is explained by :mod:`migrate.dns.diagnose`: what is known, and the causes by likelihood.
"""

from __future__ import annotations

import logging

import dns.exception
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.tsig
import dns.update

from migrate.core.errors import DnsChangedMeanwhile, DnsServerUnreachable, DnsUpdateRefused, MigrateError
from migrate.dns.changes import ChangeSet
from migrate.dns.client import DnsClient, DnsQueryFailed, label, tsig_problem
from migrate.dns.diagnose import refused
from migrate.dns.records import describe, relative

log = logging.getLogger(__name__)


def build_update(changeset: ChangeSet, tsig) -> dns.update.UpdateMessage:
    """The UPDATE message for ``changeset``: prerequisites first, then deletions, then additions."""
    update = dns.update.UpdateMessage(changeset.zone, keyring=tsig.keyring, keyname=tsig.name,
                                      keyalgorithm=tsig.algorithm)
    for change in changeset:
        if change.before is None:
            update.absent(change.name, change.rdtype)
        else:
            # Value-dependent: the server compares the whole RRset's data; TTL 0 as RFC 2136 §2.4.2 requires.
            update.present(change.name, *change.before.rdata_objects())
    for change in changeset:  # deletions before additions: a CNAME can only arrive once its name is clear
        if change.before is not None:
            update.delete(change.name, change.rdtype)
    for change in changeset:
        if change.after is not None:
            update.add(change.name, change.after.to_rdataset())
    return update


def require_primary_for(client: DnsClient, zone: str) -> None:
    """Refuse early, with exit 9 and nothing sent, when the primary does not serve ``zone`` as its
    authoritative server (an update there would be answered NOTAUTH)."""
    who = label(client.primary)
    try:
        client.serial(client.primary, zone)
    except DnsQueryFailed as exc:
        raise DnsUpdateRefused(f"the primary {who} is not authoritative for the zone {zone}, so it cannot take "
                               f"its update ({exc.message}): nothing was changed",
                               hint="dns.nameservers must name the primary master of the ministry zones; "
                                    "a domain whose records live in another zone is updated there")


def apply_changes(client: DnsClient, changeset: ChangeSet) -> None:
    """Send ``changeset`` to the primary as one signed UPDATE over TCP. Returns when the primary has applied
    it; raises :class:`DnsUpdateRefused` (exit 9, nothing changed), :class:`DnsChangedMeanwhile` (exit 9,
    nothing changed) or :class:`DnsServerUnreachable` (exit 4; see its message for whether it may have been
    applied)."""
    if not changeset:
        return
    tsig = client.tsig()
    server = client.primary
    who = label(server)
    update = build_update(changeset, tsig)
    log.info("DNS update of %s on %s: %d RRset(s)", changeset.zone, who, len(changeset))
    try:
        response = dns.query.tcp(update, server.address, port=server.port, timeout=client.timeout * 5)
    except dns.tsig.PeerError as exc:
        raise DnsUpdateRefused(f"the primary {who} refused the update of {changeset.zone}: "
                               f"{tsig_problem(exc, client.section.tsig.name if client.section.tsig else None)}; "
                               "nothing was changed",
                               hint="check dns.tsig (name, algorithm, secret) against the server's key")
    except dns.exception.Timeout:
        raise DnsServerUnreachable(
            f"the primary {who} did not answer the update of {changeset.zone} in time; it may or may not have "
            "applied it", hint="run the same command again: it reads the records afresh and sends only what is "
                               "still to change")
    except ConnectionRefusedError:
        raise DnsServerUnreachable(f"the primary {who} refused the connection (no DNS server listening on TCP): "
                                   f"nothing was sent")
    except (ConnectionError, OSError) as exc:
        raise DnsServerUnreachable(f"the primary {who} cannot be reached: {exc.strerror or exc}; the update of "
                                   f"{changeset.zone} may not have been sent")
    except dns.exception.DNSException as exc:
        raise DnsUpdateRefused(f"the primary {who} sent an answer to the update of {changeset.zone} that cannot "
                               f"be read ({exc}); check with 'govmigrate dns plan' whether it was applied")
    rcode = response.rcode()
    if rcode == dns.rcode.NOERROR:
        return
    if rcode in (dns.rcode.NXRRSET, dns.rcode.YXRRSET, dns.rcode.NXDOMAIN, dns.rcode.YXDOMAIN):
        raise _changed_meanwhile(client, changeset, rcode)
    # REFUSED, NOTAUTH, SERVFAIL, ...: what is known, and the causes in order of likelihood (a probe tells the key
    # and policy apart from the records themselves).
    raise refused(client, changeset, rcode)


def _changed_meanwhile(client: DnsClient, changeset: ChangeSet, rcode: int) -> DnsChangedMeanwhile:
    """Find the RRset that is no longer as read, to say which one and what it holds now."""
    for change in changeset:
        try:
            now = client.rrset(client.primary, change.name, change.rdtype)
        except MigrateError:
            continue
        if (change.before is None and now is not None) or (change.before is not None and not change.before.same_data(now)):
            name = f"{relative(change.name, changeset.zone)} {change.rdtype} in {changeset.zone}"
            return DnsChangedMeanwhile(
                f"{name} changed since it was read (was: {describe(change.before)}; now: {describe(now)}): the "
                f"update was refused by its prerequisite and nothing was changed",
                rrset=name, now=describe(now),
                hint="look at what changed and why; then run the command again, which reads the records afresh")
    return DnsChangedMeanwhile(
        f"a record of {changeset.zone} changed since it was read (the primary answered "
        f"{dns.rcode.to_text(rcode)} to the update's prerequisites): nothing was changed",
        hint="run the command again, which reads the records afresh")
