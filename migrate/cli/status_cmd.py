"""`govmigrate status`: the helpdesk view of one user's mailbox in the migration."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from migrate.cli.app import App, pass_app
from migrate.cli.output import emit_json, emit_table, human_bytes, output_options
from migrate.core.errors import UsageError

if TYPE_CHECKING:
    from migrate.reports.status import StatusView



@click.command()
@click.argument("user")
@output_options(csv=False)
@pass_app
def command(app: App, user: str, fmt: str) -> None:
    """Where is USER (email, login, or part of a name or address, without regard to case or accents)?

    Shows the user's wave and its maintenance window, the mailbox's state with messages copied of
    the total and the last sync, any failure in plain words, and what happens next. Reads the state
    store only; several matches are listed for you to pick one.
    """
    from migrate.reports.status import find_users, status_view

    as_json = fmt == "json"
    store = app.store
    matches = find_users(store, user)
    if not matches:
        raise UsageError(f"no mailbox matches {user!r}", hint="try part of the name or address; the user must be "
                                                                "in a ministry's user list")
    if len(matches) > 1:
        rows = [{"email": m.email, "name": m.display_name, "source": m.source_id, "wave": m.wave or "",
                 "state": m.state} for m in matches]
        if as_json:
            emit_json({"matches": rows})
        else:
            emit_table(app, f"{len(matches)} mailboxes match {user!r}; give one address",
                       [("email", "mailbox"), ("name", "name"), ("source", "source"), ("wave", "wave"),
                        ("state", "state")], rows)
        return
    view = status_view(app.project, store, matches[0])
    if as_json:
        emit_json(view.as_dict())
    else:
        render(app, view)


def render(app: App, v: StatusView) -> None:
    out = app.out

    def line(label: str, value: str) -> None:
        out.print(f"  {label:<12} {value}", markup=False, highlight=False)

    out.print(f"{v.display_name or v.email} <{v.email}>", style="bold", markup=False, highlight=False)
    line("ministry", f"{v.ministry} (source {v.source_id}), login {v.login}"
         + (f", flags: {' '.join(v.flags)}" if v.flags else ""))
    if v.wave:
        line("wave", f"{v.wave.id}: {v.wave.title}" + (" — white-glove" if v.wave.white_glove else "")
             + ("" if v.wave.approved else " (not approved yet)"))
        line("window", v.wave.window_text())
    else:
        line("wave", "none")
    line("state", f"{v.state}: {v.state_text}")
    if v.reason_text:
        line("problem", v.reason_text)
        if v.reason and v.reason != v.reason_text:
            line("details", v.reason)
    total = f"{v.messages_total}" if v.messages_total is not None else "?"
    line("copied", f"{v.messages_copied} of {total} messages ({human_bytes(v.bytes_copied)} of "
                   f"{human_bytes(v.bytes_total) or '?'})"
         + (f"; {v.messages_refused} not copied" if v.messages_refused else "")
         + (f" ({v.messages_accepted} accepted)" if v.messages_accepted else ""))
    if v.messages_stale:
        line("", f"  {v.messages_stale} copies of messages the user deleted at the source since are still on the "
                 "central host; the final pass removes them")
    for m in v.messages_not_copied:
        line("", f"  not copied ({m['folder']}): {m['why']}"
             + (f" — accepted: {m['accepted']}" if m.get("accepted") else ""))
    for m in v.messages_not_migrated:
        line("", f"  not migrated ({m['folder']}): {m['why']}")
    line("last sync", f"{v.last_sync_at} ({v.last_sync_result})" + (f" on {v.last_sync_host}" if v.last_sync_host
                                                                       else "") if v.last_sync_at else "never")
    for g in v.groupware:
        where = "DAV" if g["location"].startswith(("https://", "http://")) else "file"
        line(g["kind"], f"{g['copied']} of {g['source_items']} items copied"
             + (f", {g['failed']} not copied" if g["failed"] else "") + f" ({where} {g['location']})")
    _settings(line, v)
    line("domain", _domain_text(v))
    if v.copied_back:
        back = v.copied_back
        line("copied back", f"{back['messages']} message(s) ({human_bytes(back['bytes'])}) that reached the central "
                            "host after the switch are on the ministry server again"
             + (f"; {len(back['not_copied'])} not copied back" if back["not_copied"] else ""))
        for m in back["not_copied"]:
            line("", f"  not copied back ({m['folder']}): {m['why']}")
    for i, phone in enumerate(v.phones):
        dids = f", DIDs {' '.join(phone['dids'])}" if phone["dids"] else ""
        vm = f", voicemail {phone['voicemail']}" if phone["voicemail"] else ""
        by_name = " (linked by name only: the migration team confirms)" if phone["linked_by"] == "name" else ""
        line("phone" if i == 0 else "", f"extension {phone['extension']}{dids}{vm}: {phone['state_text']}{by_name}")
        if phone["line"] == "by-hand":
            line("", "  not a SIP phone: the migration team moves this line by hand")
        if phone["held"]:
            line("", f"  held: an error in the ministry's PBX files concerns it ({phone['held'][0]}); the "
                     "migration team fixes the file before it moves")
        if phone.get("sip_check"):
            line("", f"  last SIP check {phone['sip_check']['checked_at']}: {phone['sip_check']['text']}")
    if not v.phones:
        line("phone", "no extension of a ministry PBX is linked to this user")
    for i, step in enumerate(v.next_steps):
        line("next" if i == 0 else "", step)
    if v.events:
        out.print("  recent events:", markup=False, highlight=False)
        for e in v.events:
            out.print(f"    {e['at']}  {e['action']}: {e['detail']}", markup=False, highlight=False)


#: How each kind of setting is named for the helpdesk.
SETTING_WORDS = {"rule": "mail rule", "vacation": "out-of-office", "sharing": "shared folder", "delegate": "delegate"}


def _settings(line, v: StatusView) -> None:
    """Mail rules, out-of-office, shared folders and delegates: what the last sync did with each (or, before any
    sync, what the inventory found), each in words the helpdesk can read to the user."""
    read = f" that read them, {v.settings_read_at}" if v.settings_read_at else ""
    rows, when = (v.settings, f"moved by the last sync{read}") if v.settings \
        else (v.settings_inventory, "found by the inventory")
    if not rows:
        return
    line("settings", f"Rules, out-of-office, shared folders and delegates ({when}):")
    for s in rows:
        what = SETTING_WORDS.get(s["kind"], s["kind"])
        if s["name"] == "*":
            line("", f"  {what}s: {s['state_text']}: {s['reason']}")
            continue
        line("", f"  {what} {s['name']!r}: {s['state_text']}" + (f" — {s['reason']}" if s["reason"] else ""))


def _domain_text(v: StatusView) -> str:
    """Where the user's domain's mail goes, in the helpdesk's words."""
    from migrate.core import lifecycle

    mx = f"; MX {', '.join(v.mx_now)}" if v.mx_now else ""
    if v.domain_state == "rollback-incomplete":
        where = "the central host" if v.mx_at_central else "the ministry server"
        return f"{v.domain} is being switched back (rollback not finished: records left); mail goes to {where}{mx}"
    if v.domain_state == "restored":
        return f"{v.domain} was switched back to the ministry server; its mail is being copied back{mx}"
    if v.domain_state in lifecycle.DOMAIN_SWITCHED:
        finished = "" if v.domain_state in ("cut-over", "done", "settled") else " (the cut-over is not finished)"
        return f"{v.domain} switched to the central host at {v.switched_at}{finished}{mx}"
    if v.domain_state == "rolled-back":
        return f"{v.domain} was switched back to the ministry server (rolled back){mx}"
    if v.domain_state == "baselined":
        return f"{v.domain} is being switched to the central host now"
    planned = f" after wave {v.cutover_wave}" if v.cutover_wave else " (not planned yet)"
    return f"{v.domain} not switched yet: mail still goes to the ministry server; switch{planned}"
