"""The rollback of a wave's DNS cut-over (``govmigrate dns rollback --wave WAVE``): each domain's records put back
and the mail that reached the central host since the switch copied back, so that every domain ends in a known
state, and the operator is told exactly what is left when it cannot.

Per domain, each part recorded in ``dns_domains`` and as an event ``dns/<domain>``:

1. **Records** (:mod:`migrate.dns.restore`): the inverse of the recorded change set, whose prerequisites are the
   records exactly as the cut-over left them. When the primary refuses it whole, it is sent one RRset at a time
   (a CNAME with the records at its name): every RRset the primary allows is restored; each it refuses (the
   zone's integrity checks, a policy, someone's change since the cut-over, which is never overwritten) is listed
   with why, and written as an nsupdate script and zone-file lines beside the baseline (``reports/dns-rollback-<wave>-<domain>.nsupdate`` and
   ``.zone``, 0600); the domain is then ``rollback-incomplete``.
2. **Wait** until every authoritative server serves what was restored (its data: a secondary that never took the
   switch may keep an older serial, and is named).
3. **Caches**: resolvers may hold the switched MX for its TTL; the copy back starts once that has passed since the
   records were restored (``dns.max_ttl_wait`` shortens it in labs). The domain is ``restored`` meanwhile.
4. **Copy back** (:mod:`migrate.waves.copy_back`): each mailbox's new mail and flag changes to the ministry
   server; each whose copy back completes goes back to ``final-synced``.
5. The domain is ``rolled-back`` once its records and its mailboxes are back.

Running the rollback again resumes where it stopped, retries what was refused, and copies back whatever reached
the central host since (nothing twice). While the MX itself could not be restored, mail still arrives on the
central host: the mailboxes stay cut over and nothing is copied back until the MX is back. The wave need not be
approved as its file stands (a rollback must work in an emergency), but its lock is taken: a rollback never runs
beside a cut-over of the same wave.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

from migrate.core import lifecycle
from migrate.core.errors import Interrupted
from migrate.core.files import write_private
from migrate.core.progress import ProgressEvent, ProgressSink, no_progress
from migrate.core.store import now
from migrate.dns.changes import ChangeSet, mx_text
from migrate.dns.client import DnsClient, dns_section
from migrate.dns.prepare import parse_time
from migrate.dns.propagation import wait_propagated
from migrate.dns.records import relative
from migrate.dns.restore import nsupdate_script, restore, zone_lines
from migrate.waves.context import WaveRun
from migrate.waves.copy_back import copy_back, copy_back_candidates
from migrate.waves.dns_switch import DomainStep, DomainWork
from migrate.waves.results import Gate
from migrate.waves.step import StepOptions

#: Where a rollback has something to do.
ROLLBACK_FROM = (*lifecycle.DOMAIN_BEGUN, *lifecycle.DOMAIN_ROLLING_BACK, "rolled-back")


class _DomainRollback(DomainWork):
    """One domain's rollback, from wherever the last run left it."""

    def run(self) -> bool:
        """True when the domain ended rolled back (records and mail)."""
        row = self.row
        state = row.state if row else "unchanged"
        if state not in ROLLBACK_FROM or row is None or not row.changes:
            self.outcome.detail = f"nothing to roll back ({state})"
            return True
        if self.run_.dry_run:
            self.outcome.changes = ChangeSet.from_dict(row.changes).inverse().rows()
            self.note(f"would put back {len(self.outcome.changes)} RRset(s) and copy back the mail that reached the "
                      "central host since the switch")
            return True
        mx_back = True
        if state in lifecycle.DOMAIN_BEGUN or state == "rollback-incomplete":
            mx_back = self.records()
        if not mx_back:
            return False
        return self.mail()

    # -- the records ----------------------------------------------------------------------------------------

    def records(self) -> bool:
        """Put the baseline back, whole or one RRset at a time; True when the MX is back (the copy back may follow)."""
        assert self.row is not None and self.row.changes
        inverse = ChangeSet.from_dict(self.row.changes).inverse()
        self.outcome.changes = inverse.rows()
        done = restore(self.client, inverse)
        back = inverse.only(done.restored + done.already)
        # Caches may hold the switched records for their TTL from the moment the baseline is back: now, when this
        # run put some back, or the operator did (nsupdate) since a run that could not. A switch never sent (the
        # domain was only baselined) left nothing to wait for.
        served = self.row.state != "baselined"
        restored_at = {"restored_at": now()} if done.restored or (served and not self.row.restored_at) else {}
        if back:
            seen = wait_propagated(self.client, back, stop=self.stop, same_serial=False,
                                   on_look=lambda s: None if s.served else self.progress(ProgressEvent(
                                       "note", self.domain, detail=f"{self.domain}: waiting for "
                                       + "; ".join(s.lagging()))))
            lag = [] if seen.done else seen.lagging()
        else:
            lag = []
        base, files = self.files()
        mx_restored = not any(u.change.name == inverse.domain and u.change.rdtype == "MX" for u in done.unrestored)
        restored_text = (f"{len(done.restored)} RRset(s) put back" + (f", {len(done.already)} already were"
                                                                      if done.already else ""))
        if lag:
            restored_text += "; every server serves them, but not every one with the primary's serial: " + \
                "; ".join(lag)
        if done.complete:
            for path in files:
                path.unlink(missing_ok=True)
            detail = f"baseline restored: {restored_text}; " + mx_text(inverse)
            self.record("restored", "restore", detail, unrestored=None, **restored_at)
            return True
        write_private(files[0], nsupdate_script(done, self.client, header=base))
        write_private(files[1], zone_lines(done, header=base))
        refused = "; ".join(f"{relative(u.change.name, inverse.zone)} {u.change.rdtype} ({u.why})"
                            for u in done.unrestored)
        detail = (f"rollback incomplete: {restored_text}; {len(done.unrestored)} RRset(s) could not be put back: "
                  f"{refused}. They are written as an nsupdate script ({files[0].name}) and zone-file lines "
                  f"({files[1].name}) beside the baseline: fix the cause, apply them, and run the rollback again")
        if not mx_restored:
            detail += ("; the MX still points at the central host, so mail keeps arriving there: the mailboxes stay "
                       "cut over and nothing is copied back until the MX is back")
        self.outcome.unrestored = [u.to_dict(inverse.zone) for u in done.unrestored]
        self.outcome.files = [str(f) for f in files]
        doc = {"rrsets": self.outcome.unrestored, "files": self.outcome.files, "mx_restored": mx_restored}
        self.record("rollback-incomplete", "rollback-incomplete", detail, unrestored=doc,
                    **(restored_at if mx_restored else {}))
        return mx_restored

    def files(self) -> tuple[str, list[Path]]:
        """The header and paths of the operator's files, beside the baseline."""
        assert self.row is not None
        wave = self.row.wave or self.run_.wave_id
        where = Path(self.row.baseline_file).parent if self.row.baseline_file else self.run_.reports_dir
        stem = f"dns-rollback-{wave}-{self.domain}"
        header = f"govmigrate: the rollback of {self.domain} (wave {wave}), {now()}"
        return header, [where / f"{stem}.nsupdate", where / f"{stem}.zone"]

    # -- the mail -------------------------------------------------------------------------------------------

    def mail(self) -> bool:
        """After the switched MX's TTL has passed, copy back each mailbox's new mail; True when all are back."""
        self.wait_for_caches()
        mailboxes = copy_back_candidates(self.run_, [self.domain])
        done, failed = copy_back(self.run_, None, mailboxes, self.progress, self.stop)
        self.outcome.mailboxes = [o.as_dict() for o in done + failed]
        copied = sum(o.copied for o in done)
        complete = self.row is not None and self.row.state != "rollback-incomplete"
        if failed:
            detail = (f"{len(failed)} mailbox(es) could not be copied back ({failed[0].item}: {failed[0].error}); "
                      "run the rollback again")
            self.note(detail)
            return False
        detail = (f"{copied} message(s) that reached the central host after the switch copied back to the ministry "
                  f"server; {len(done)} mailbox(es) final-synced")
        if complete:
            self.record("rolled-back", "rollback", detail)
            return True
        self.note(detail + "; the records listed before are still to be put back")
        with self.store.tx():
            self.store.add_event(f"dns/{self.domain}", "copy-back", detail)
        return False

    def wait_for_caches(self) -> None:
        """Until the TTL of the switched records has passed since they were restored (what a cache may hold)."""
        assert self.row is not None
        if not self.row.restored_at:
            return
        changes = ChangeSet.from_dict(self.row.changes) if self.row.changes else None
        ttl = max([c.after.ttl for c in changes if c.after is not None] if changes else [0], default=0)
        if self.row.settled_at and self.row.ttls:
            ttl = max([ttl, *self.row.ttls.values()])
        if self.section.max_ttl_wait is not None:
            ttl = min(ttl, int(self.section.max_ttl_wait))
        left = (parse_time(self.row.restored_at).timestamp() + ttl) - datetime.now(UTC).timestamp()
        if left > 0:
            self.note(f"waiting {left:.0f} s for caches of the switched records (TTL {ttl} s) to expire before "
                      "copying mail back")
            end = time.monotonic() + left
            while time.monotonic() < end:
                if self.stop.wait(min(1.0, max(0.0, end - time.monotonic()))):
                    raise Interrupted("the rollback was stopped while waiting for caches to expire; run the same "
                                      "command again to resume")


class DnsRollback(DomainStep):
    """Every domain of the wave's cutover_domains back to its baseline, and its mail back to the ministry server."""

    name = "rollback"
    verb = "rollback"
    work = _DomainRollback
    target = lifecycle.FINAL_SYNCED
    needs_approval = False

    def command(self, wave: str, options: StepOptions) -> str:
        return f"govmigrate dns rollback --wave {wave}"

    def select(self, run: WaveRun, options: StepOptions) -> lifecycle.Eligibility[str]:
        return lifecycle.Eligibility(run.domains(), [], [])

    def gate(self, run: WaveRun, work: list[str], options: StepOptions, progress: ProgressSink = no_progress) -> Gate:
        # A missing or unusable TSIG secret stops the rollback before any server is asked.
        DnsClient(dns_section(run.project, tsig=True), run.project.base_dir).tsig()
        return Gate(checked=list(work))
