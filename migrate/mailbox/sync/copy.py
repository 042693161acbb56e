"""Copying what is new: batches fetched from the source and appended to the central host (one MULTIAPPEND, or
one by one to find a refused message), large messages streamed, each batch recorded pending then copied. A new
message that is a copy already on the central host, whose source message the user moved here, is moved there
instead (:mod:`migrate.mailbox.sync.moves`)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from migrate.core.crashpoints import crashpoint
from migrate.core.errors import ClaimLost
from migrate.core.store import FolderState
from migrate.mailbox.fingerprint import PREFIX, fingerprint
from migrate.mailbox.protocol import Appendable, CommandFailed
from migrate.mailbox.source_imap import ImapSourceMailbox
from migrate.mailbox.sync.context import PassContext
from migrate.mailbox.sync.moves import Move, MovePool, Mover
from migrate.mailbox.sync.reports import FolderReport, Item, Key, cols, flagstr
from migrate.mailbox.unexportable import Unreadable

log = logging.getLogger(__package__)  # the engine's one logger, migrate.mailbox.sync


class Copier:
    def __init__(self, ctx: PassContext) -> None:
        self.ctx = ctx
        self.mover = Mover(ctx)

    def _batches(self, items: list[Item]) -> Iterator[list[Item]]:
        options = self.ctx.options
        batch: list[Item] = []
        size = 0
        for item in items:
            if item.size > options.stream_threshold:
                if batch:
                    yield batch
                    batch, size = [], 0
                yield [item]
                continue
            if batch and (size + item.size > options.batch_bytes or len(batch) >= options.batch_messages):
                yield batch
                batch, size = [], 0
            batch.append(item)
            size += item.size
        if batch:
            yield batch

    def copy(self, state: FolderState | None, dest_name: str, dest_status: dict[str, int], items: list[Item],
             fr: FolderReport, dest_available: dict[str, list[tuple[int, tuple]]],
             pool: MovePool | None = None) -> int:
        """Copy ``items`` in batches; returns the destination's UIDNEXT as far as this pass knows it. ``pool``:
        the copies whose message left its folder at the source; one of them that is a new item here is moved."""
        ctx = self.ctx
        store = ctx.store
        next_uid = dest_status.get("UIDNEXT") or 1
        if not items:
            return next_uid
        if ctx.dry:
            fr.to_copy += len(items)
            fr.to_copy_bytes += sum(i.size for i in items)
            return next_uid
        assert state is not None
        if state.dest_uidvalidity != dest_status.get("UIDVALIDITY"):
            store.update_folder(state.id, dest_uidvalidity=dest_status.get("UIDVALIDITY"))
        for batch in self._batches(items):
            ctx.check_stop()
            if len(batch) == 1 and batch[0].size > ctx.options.stream_threshold and not ctx.is_ews:
                next_uid = self._copy_streamed(state, dest_name, batch[0], next_uid, fr, pool)
                continue
            bodies = self._fetch(batch)
            for item in batch:
                answer = bodies.get(item.key)
                if isinstance(answer, Unreadable):
                    # The source cannot give this item at all (an EWS item Exchange cannot convert): recorded
                    # as failed with its reason, and the folder goes on (its sync state then advances).
                    del bodies[item.key]
                    reason = f"{answer.described}: {answer.reason}"
                    store.record_failed(state.id, *cols(item.key), "", item.size, reason)
                    fr.failed.append((answer.described, answer.reason))
            fetched = sum(len(b) for b in bodies.values())
            if ctx.limiter:
                ctx.limiter.consume(fetched)
            ready: list[tuple[Item, bytes, str]] = []
            matched = []
            moves: list[Move] = []
            for item in batch:
                raw = bodies.get(item.key)
                if raw is None:
                    continue  # expunged at the source since the listing: nothing to copy
                fp = ctx.fingerprint(len(raw), raw[:PREFIX])
                slot = dest_available.get(fp)
                if slot:
                    uid, dest_flags = slot.pop(0)
                    matched.append((*cols(item.key), uid, fp, len(raw), flagstr(dest_flags)))
                    continue
                origin = pool.take(fp) if pool else None
                if origin is not None:
                    moves.append(Move(item, fp, len(raw), origin))
                    continue
                ready.append((item, raw, fp))
            if matched:
                store.record_copied(state.id, matched)
                fr.reconciled += len(matched)
            if moves:
                lost, next_uid = self.mover.move(state, dest_name, moves, next_uid, fr)
                ready.extend((m.item, bodies[m.item.key], m.fingerprint) for m in lost)  # type: ignore[misc]
            if not ready:
                continue
            store.record_pending(state.id, [(*cols(i.key), fp, len(raw), flagstr(i.flags))
                                            for i, raw, fp in ready], next_uid)
            landed = self._append(state, dest_name, ready, fr)
            if landed:
                self._record_copied(state, dest_name, [(*cols(i.key), uid, fp, len(raw), flagstr(i.flags))
                                                       for (i, raw, fp), uid in landed])
                next_uid = max(next_uid, max(uid for _, uid in landed) + 1)
                copied_bytes = sum(len(raw) for (_, raw, _), _ in landed)
                fr.copied += len(landed)
                fr.copied_bytes += copied_bytes
                fr.keywords_encoded += sum(1 for (i, _, _), _ in landed if i.encoded)
                ctx.advance(len(landed), copied_bytes)
        return next_uid

    def _record_copied(self, state: FolderState, dest_name: str, rows: list[tuple]) -> None:
        """The batch that landed, recorded; if this host lost the mailbox meanwhile, the copies are handed back
        with the refusal (they are on the central host all the same: migrate.mailbox.sync.orphans)."""
        try:
            self.ctx.store.record_copied(state.id, rows)
        except ClaimLost as lost:
            lost.appended = (state.id, dest_name, rows)
            raise

    def _append(self, state: FolderState, dest_name: str, ready: list[tuple[Item, bytes, str]],
                fr: FolderReport) -> list[tuple[tuple[Item, bytes, str], int]]:
        """Append a batch: one MULTIAPPEND where the central host has it, else one message at a time. A
        refused MULTIAPPEND appended nothing (RFC 3502); the batch is then appended one by one, carefully
        (synchronizing literals, so a refusal leaves the session usable), to find and record the refused
        message(s). Returns each landed entry with its destination UID."""
        ctx = self.ctx
        dest = ctx.dest
        messages = [Appendable(raw, i.flags, i.internaldate) for i, raw, _ in ready]
        ctx.before_append()
        crashpoint("before-append")
        careful = False
        if len(messages) > 1 and dest.multiappend_ok:
            try:
                result = dest.append_batch(dest_name, messages)
                crashpoint("after-append")
                if result.uidvalidity and result.uidvalidity != state.dest_uidvalidity:
                    ctx.store.update_folder(state.id, dest_uidvalidity=result.uidvalidity)
                return list(zip(ready, result.uids, strict=True))
            except CommandFailed as exc:
                log.info("%s: batch refused (%s); appending one by one", ctx.mailbox.email, exc.text)
                careful = True
        landed = []
        for entry, msg in zip(ready, messages, strict=True):
            try:
                one = dest.append_one(dest_name, msg, careful=careful)
                crashpoint("after-append")
                landed.append((entry, one.uids[0]))
            except CommandFailed as single:
                item, raw, fp = entry
                reason = f"central host refused it: {single.text}"
                ctx.store.record_failed(state.id, *cols(item.key), fp, len(raw), reason)
                fr.failed.append((_describe(item, raw), reason))
                careful = True
        return landed

    def _fetch(self, batch: list[Item]) -> dict[Key, bytes | Unreadable]:
        if self.ctx.is_ews:
            return dict(self.ctx.src.mime([str(i.key) for i in batch]))
        return self.ctx.src.bodies([int(i.key) for i in batch])  # type: ignore[misc]

    def _copy_streamed(self, state: FolderState, dest_name: str, item: Item, next_uid: int,
                       fr: FolderReport, pool: MovePool | None = None) -> int:
        ctx = self.ctx
        src: ImapSourceMailbox = ctx.src
        with ctx.large:
            chunks = src.chunks(int(item.key), item.size, ctx.options.chunk_size)
            try:
                first = next(chunks)
            except StopIteration:
                return next_uid
            fp = fingerprint(item.size, first[:PREFIX])
            origin = pool.take(fp) if pool else None
            if origin is not None:
                # Moved here at the source: its first piece named it; the rest is never read, nor appended again.
                lost, next_uid = self.mover.move(state, dest_name, [Move(item, fp, item.size, origin)], next_uid, fr)
                if not lost:
                    chunks.close()
                    return next_uid
            ctx.store.record_pending(state.id, [(*cols(item.key), fp, item.size, flagstr(item.flags))], next_uid)

            def stream() -> Iterator[bytes]:
                if ctx.limiter:
                    ctx.limiter.consume(len(first))
                yield first
                crashpoint("mid-stream")
                for piece in chunks:
                    if ctx.limiter:
                        ctx.limiter.consume(len(piece))
                    yield piece

            ctx.before_append()
            try:
                result = ctx.dest.append_streamed(dest_name, item.flags, item.internaldate, item.size, stream())
            except CommandFailed as exc:
                reason = f"central host refused it: {exc.text}"
                ctx.store.record_failed(state.id, *cols(item.key), fp, item.size, reason)
                fr.failed.append((f"UID {item.key} ({item.size} bytes)", reason))
                return next_uid
            self._record_copied(state, dest_name, [(*cols(item.key), result.uids[0], fp, item.size,
                                                    flagstr(item.flags))])
            fr.copied += 1
            fr.copied_bytes += item.size
            fr.keywords_encoded += int(item.encoded)
            ctx.advance(1, item.size)
            return max(next_uid, result.uids[0] + 1)


def _describe(item: Item, raw: bytes) -> str:
    subject = ""
    head = raw[:PREFIX].split(b"\r\n\r\n", 1)[0]
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"subject:"):
            subject = line[8:].strip().decode("utf-8", "replace")[:60]
            break
    ref = f"UID {item.key}" if isinstance(item.key, int) else f"item {str(item.key)[:16]}…"
    return f"{ref} ({len(raw)} bytes){': ' + subject if subject else ''}"
