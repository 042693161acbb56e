"""What users lose in other migrations: mail rules, out-of-office replies, shared folders and delegates.

The inventory counts them per mailbox (:func:`inventory`: each one "to move" or "cannot be moved", with why);
a sync moves them after the mail (:class:`SettingsPass`), and a later pass carries what changed since:

* an IMAP source's Sieve scripts (ManageSieve) go to the central host as they are; a rule redirecting mail
  outside the government is held (:func:`migrate.mailbox.sieve.hold_back`) unless the project file allows it;
* Exchange inbox rules and the out-of-office reply become one Sieve script (:mod:`.exchange_rules`);
* folder access lists (IMAP ACLs, Exchange folder permissions) become ACLs on the central host (:mod:`.acl`);
* delegates are listed: the central calendar server offers no sharing govmigrate could set.

Nothing is activated by surprise: a script is made the active one only where the central host has none, or
has the one govmigrate wrote; a script govmigrate cannot read to check for forwarding is moved but not turned
on. Only what govmigrate wrote is ever changed or removed again: each write's digest is kept, and a script or
right someone changed on the central host since is left alone and said so.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from migrate.core.config import ImapServer, Project, Source
from migrate.core.errors import LoginFailed, MigrateError, RemoteError, TransientError
from migrate.core.store import MailboxRow, SettingRow
from migrate.mailbox import acl, keywords, protocol, sieve
from migrate.mailbox.exchange_rules import SCRIPT, Context, Outcome, translate
from migrate.mailbox.imap import describe_failure

log = logging.getLogger(__name__)

KINDS = ("rule", "vacation", "sharing", "delegate")
#: The words each state has for people (reports, status).
STATE_WORDS = {"to-move": "to move", "cannot-move": "cannot be moved, tell the user", "unknown": "not known",
               "moved": "moved", "held": "moved, switched off", "not-moved": "not moved, tell the user",
               "failed": "failed, retried next pass"}
_SCRIPT_NAME = re.compile(r"[^\w .@+-]")


@dataclass
class Item:
    """One rule, out-of-office reply, shared folder entry or delegate, and what became (or becomes) of it."""

    kind: str
    name: str
    state: str
    reason: str = ""
    target: str | None = None
    digest: str | None = None

    def row(self, mailbox_id: int, phase: str) -> SettingRow:
        return SettingRow(mailbox_id, phase, self.kind, self.name[:300], self.state, self.reason, self.target,
                          self.digest)


@dataclass
class SettingsReport:
    """What one pass did with a mailbox's settings."""

    items: list[Item] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def count(self, state: str) -> int:
        return sum(1 for i in self.items if i.state == state)


def central_script_name(name: str) -> str:
    return _SCRIPT_NAME.sub("_", name).strip()[:100] or "migrated"


def _unknown(kind: str, why: str) -> Item:
    return Item(kind, "*", "unknown", why)


# -- reading a source --------------------------------------------------------------------------------------

@dataclass
class SourceSettings:
    """A mailbox's settings at the source, as found now."""

    #: IMAP: (script name, text, active); None when ManageSieve was not read (see ``errors``).
    scripts: list[sieve.Script] | None = None
    #: Exchange: the rules and the out-of-office settings (exchange_rules records).
    rules: list | None = None
    oof: Any = None
    #: Source folder name (as the state store keeps it) → its grants; None when not read.
    grants: list[acl.Grant] | None = None
    delegates: list | None = None
    #: EWS folder id or distinguished id → the source folder name.
    folder_names: dict[str, str] = field(default_factory=dict)
    #: kind → why it could not be read.
    errors: dict[str, str] = field(default_factory=dict)
    #: Of ``errors``, the kinds the source does not offer at all (no ManageSieve port set, no IMAP ACL): no
    #: later read would find more, unlike a read that failed.
    not_offered: set[str] = field(default_factory=set)

    @property
    def failed(self) -> bool:
        """Whether a kind the source offers could not be read."""
        return bool(set(self.errors) - self.not_offered)


class SourceReader:
    """Reads a source mailbox's settings; shared by the inventory and the sync."""

    def __init__(self, project: Project, source: Source, opener: Callable[[], sieve.ManageSieve] | None) -> None:
        self.project = project
        self.source = source
        self.opener = opener

    def read(self, src: Any, login: str, folders: list | None = None) -> SourceSettings:
        """``folders``: the IMAP source's folders as a pass just listed them ((info, listed) pairs); None: listed
        here."""
        found = SourceSettings()
        if isinstance(self.source.server, ImapServer):
            self._imap(src, login, found, folders)
        else:
            self._ews(src, found)
        return found

    def _guarded(self, kinds: tuple[str, ...], found: SourceSettings, fn: Callable[[], None]) -> None:
        try:
            fn()
        except (LoginFailed, TransientError):
            raise
        except MigrateError as exc:
            for kind in kinds:
                found.errors[kind] = exc.message

    def _imap(self, src: Any, login: str, found: SourceSettings, folders: list | None = None) -> None:
        server = self.source.server
        assert isinstance(server, ImapServer)
        if server.sieve_port is None or self.opener is None:
            for kind in ("rule", "vacation"):
                found.errors[kind] = ("not read: the source's ManageSieve port is not set "
                                      f"(sources[{self.source.id}].server.sieve_port)")
                found.not_offered.add(kind)
        else:
            def scripts() -> None:
                assert self.opener is not None
                with self.opener() as conn:
                    found.scripts = conn.scripts()
            self._guarded(("rule", "vacation"), found, scripts)
        session = src.session
        if not session.has("ACL"):
            found.errors["sharing"] = "not read: the server does not offer access lists (IMAP ACL, RFC 4314)"
            found.not_offered.add("sharing")
            return

        def grants() -> None:
            names = [info.name for info, _listed in (src.folders() if folders is None else folders)]
            try:
                # One round trip for every folder's access list, not one per folder (a nightly pass reads them
                # all again for every mailbox).
                entries = protocol.getacl_many(session.client, names)
            except Exception as exc:
                raise RemoteError(f"GETACL: {exc}")
            out = []
            for name in names:
                got = entries[name]
                if isinstance(got, protocol.CommandFailed):
                    raise RemoteError(f"GETACL {name}: {got.status} {got.text}")
                out += acl.grants_of(name, got, login)
            found.grants = out
        self._guarded(("sharing",), found, grants)

    def _ews(self, box: Any, found: SourceSettings) -> None:
        from migrate.mailbox import ews_settings

        tree = box.folder_tree()
        mail = [f for f in tree if f.kind == "mail"]
        for f in mail:
            found.folder_names[f.folder_id] = "/".join(f.path)
            if f.well_known:
                found.folder_names[f.well_known] = "/".join(f.path)

        def rules() -> None:
            found.rules = ews_settings.rules(box)

        def oof() -> None:
            found.oof = ews_settings.out_of_office(box)

        def grants() -> None:
            perms = ews_settings.permissions(box, mail)
            found.grants = [g for f in mail for g in acl.from_exchange("/".join(f.path), perms.get(f.folder_id, []))]

        def delegates() -> None:
            found.delegates = ews_settings.delegates(box)

        self._guarded(("rule",), found, rules)
        self._guarded(("vacation",), found, oof)
        self._guarded(("sharing",), found, grants)
        self._guarded(("delegate",), found, delegates)


# -- what becomes of each -------------------------------------------------------------------------------------

class Planner:
    """Decides, for one mailbox, what each of its settings becomes (shared by the inventory and the sync)."""

    def __init__(self, project: Project, source: Source, email: str, logins: Mapping[str, str],
                 folder_map: dict[str, str] | None = None, now: dt.datetime | None = None) -> None:
        self.project = project
        self.source = source
        self.email = email
        self.government = project.config.government_domains()
        self.allow = project.config.central.allow_external_forwarding
        #: Source login (lower case) → email, for the source's users.
        self.logins = logins
        #: Source folder name → central folder name; None in the inventory (folders are not moved yet).
        self.folder_map = folder_map
        self.now = now or dt.datetime.now(dt.UTC)

    def central_folder(self, name: str) -> str | None:
        return name if self.folder_map is None else self.folder_map.get(name)

    # -- Sieve scripts from an IMAP source ------------------------------------------------------------

    def scripts(self, scripts: list[sieve.Script]) -> list[tuple[sieve.Script, str, str, bool, list[Item]]]:
        """Per source script: (script, central name, text to write, turn on?, items)."""
        out = []
        for script in scripts:
            facts = sieve.analyse(script.text, self.government)
            name = central_script_name(script.name)
            items: list[Item] = []
            text = script.text
            activate = script.active
            if facts.error is not None:
                activate = False
                items.append(Item("rule", f"{script.name} (whole script)", "held",
                                  f"moved as it is but not turned on: govmigrate cannot read it to check it for "
                                  f"forwarding ({facts.error})", target=name))
            else:
                held = {r.name for r in facts.forwarding_outside} if not self.allow else set()
                if held:
                    text = sieve.hold_back(script.text, held, self.government)
                for rule in facts.rules:
                    label = f"{script.name}: {rule.name}"
                    if rule.name in held:
                        items.append(Item("rule", label, "held", "it forwards mail outside the government (to "
                                          f"{', '.join(rule.outside)}); moved switched off, as the project file "
                                          "does not allow such forwarding", target=name))
                    elif rule.vacation:
                        items.append(Item("vacation", f"{script.name}: out of office", "moved",
                                          "moved with its script" + ("" if script.active else
                                                                     " (the script was not active at the source)"),
                                          target=name))
                    else:
                        reason = "moved" + ("" if script.active else " (its script was not active at the source)")
                        if rule.outside:
                            reason += (f"; it forwards outside the government (to {', '.join(rule.outside)}), as "
                                       "the project file allows")
                        items.append(Item("rule", label, "moved", reason, target=name))
            out.append((script, name, text, activate, items))
        return out

    # -- Exchange rules and out of office ---------------------------------------------------------------

    def exchange(self, found: SourceSettings) -> tuple[str | None, list[Item]]:
        """The script for an Exchange mailbox (None: nothing to write) and an item per rule and reply."""
        max_len = self.project.config.central.max_keyword_length

        def folder(key: str) -> str | None:
            name = found.folder_names.get(key)
            return self.central_folder(name) if name is not None else None

        ctx = Context(self.email, self.government, folder, lambda c: keywords.encode(c, max_len),
                      self.allow, self.now)
        translation = translate(found.rules or [], found.oof, ctx)
        items = [Item(o.kind, o.name, o.state, o.reason, target=SCRIPT if o.state in ("moved", "held") else None)
                 for o in translation.outcomes if not _quiet(o)]
        return translation.script, items

    # -- access lists --------------------------------------------------------------------------------------

    def grants(self, grants: list[acl.Grant]) -> list[tuple[acl.Grant, str | None, str | None, Item]]:
        """Per grant: (grant, central folder, central identifier, item); folder or identifier None: not moved."""
        out = []
        for grant in grants:
            name = f"{grant.folder} → {grant.identifier}"
            why = acl.why_not(grant.identifier)
            who = None if why else self.identifier(grant.identifier)
            folder = self.central_folder(grant.folder)
            if why is None and who is None:
                why = (f"{grant.identifier} is not a user govmigrate knows on the central host"
                       + (" (outside the government)" if "@" in grant.identifier else ""))
            if why is None and folder is None:
                why = "its folder is not moved to the central host"
            if why is not None:
                out.append((grant, None, None, Item("sharing", name, "not-moved", why)))
                continue
            reason = f"{who} gets {_rights_words(grant.rights)}"
            if grant.note:
                reason += f"; {grant.note}"
            out.append((grant, folder, who, Item("sharing", name, "moved", reason, target=f"{folder}\t{who}",
                                                 digest=grant.rights)))
        return out

    def identifier(self, identifier: str) -> str | None:
        """The central host's name for a source identifier: the user's address."""
        email = self.logins.get(identifier.lower())
        if email is None and "@" in identifier and sieve.inside(identifier, self.government):
            email = identifier
        return email if email and acl.is_address(email) else None

    def delegates(self, delegates: list) -> list[Item]:
        out = []
        for d in delegates:
            access = ", ".join(f"{level} of the {folder}" for folder, level in sorted(d.folders.items())) or "no folder"
            out.append(Item("delegate", d.user, "not-moved",
                            f"a delegate with {access} access: calendars and contacts on the central calendar "
                            "server are shared again by the user (govmigrate cannot set sharing there); access to "
                            "mail folders moves with their shared folders"))
        return out


def _quiet(outcome: Outcome) -> bool:
    """An out-of-office that was off is nothing to tell anyone."""
    return outcome.kind == "vacation" and outcome.reason.startswith("it was off")


def _rights_words(rights: str) -> str:
    if set(rights) >= set("lrswipte"):
        words = "read and write access"
    elif set(rights) >= set("lr"):
        words = "read access"
    else:
        words = "access"
    return f"{words} ({rights})"


# -- the inventory ----------------------------------------------------------------------------------------

def inventory(planner: Planner, found: SourceSettings) -> list[Item]:
    """What the inventory says of each setting: to-move, cannot-move, or unknown (with why)."""
    items: list[Item] = []
    if found.scripts is not None:
        for _script, _name, _text, _active, parts in planner.scripts(found.scripts):
            items += [_as_inventory(i) for i in parts]
    if found.rules is not None or found.oof is not None:
        _script, parts = planner.exchange(found)
        items += [_as_inventory(i) for i in parts]
    if found.grants is not None:
        items += [_as_inventory(item) for _g, _f, _w, item in planner.grants(found.grants)]
    if found.delegates is not None:
        items += [_as_inventory(i) for i in planner.delegates(found.delegates)]
    items += [_unknown(kind, why) for kind, why in found.errors.items()]
    return items


def _as_inventory(item: Item) -> Item:
    state = {"moved": "to-move", "held": "to-move"}.get(item.state, "cannot-move")
    reason = item.reason
    if item.state == "moved":
        reason = "" if reason == "moved" else reason.removeprefix("moved; ").removeprefix("moved ")
    elif item.state == "held":
        reason = reason.replace("moved switched off", "to be moved switched off") \
            .replace("moved as it is but not turned on", "to be moved as it is but not turned on")
    return Item(item.kind, item.name, state, reason)


# -- the sync -----------------------------------------------------------------------------------------------

class SettingsPass:
    """One mailbox's settings onto the central host, after its mail (same source session, same lock)."""

    def __init__(self, store: Any, mailbox: MailboxRow, planner: Planner, reader: SourceReader, src: Any,
                 dest: Any, central_sieve: Callable[[], sieve.ManageSieve] | None, *,
                 recorded: list[SettingRow], folders: list | None = None) -> None:
        """``recorded``: what the last sync recorded of the mailbox's settings (the store's rows)."""
        self.store = store
        self.folders = folders
        self.recorded = recorded
        self.planner = planner
        self.reader = reader
        self.src = src
        self.dest = dest
        self.central_sieve = central_sieve
        self.mailbox = mailbox

    def run(self) -> SettingsReport:
        report = SettingsReport()
        before = {(r.kind, r.name): r for r in self.recorded}
        found = self.reader.read(self.src, self.mailbox.login, self.folders)
        kinds_done: set[str] = set()
        report.items += [_unknown(k, why) for k, why in found.errors.items()]
        kinds_done.update(found.errors)
        if found.scripts is not None or found.rules is not None or found.oof is not None:
            try:
                report.items += self._scripts(found, before)
            except (LoginFailed, TransientError):
                raise
            except MigrateError as exc:
                report.errors.append(exc.message)
                report.items.append(Item("rule", "*", "failed", exc.message))
            kinds_done.update(("rule", "vacation"))
        if found.grants is not None:
            try:
                report.items += self._grants(found.grants, before)
            except Exception as exc:
                error = describe_failure(exc, self.dest.session.endpoint)
                if error.transient or isinstance(error, LoginFailed):
                    raise error
                report.errors.append(error.message)
                report.items.append(Item("sharing", "*", "failed", error.message))
            kinds_done.add("sharing")
        if found.delegates is not None:
            report.items += self.planner.delegates(found.delegates)
            kinds_done.add("delegate")
        complete = not found.failed and not report.errors and not report.count("failed")
        self.store.record_settings(self.mailbox.id, "sync", kinds_done,
                                   [i.row(self.mailbox.id, "sync") for i in report.items if i.kind in kinds_done],
                                   complete=complete)
        return report

    # -- scripts ------------------------------------------------------------------------------------------

    def _scripts(self, found: SourceSettings, before: dict) -> list[Item]:
        wanted: list[tuple[str, str, bool, list[Item]]] = []     # (central name, text, turn on, items)
        if found.scripts is not None:
            wanted = [(name, text, active, items)
                      for _s, name, text, active, items in self.planner.scripts(found.scripts)]
        else:
            script, items = self.planner.exchange(found)
            if script is not None:
                wanted = [(SCRIPT, script, True, items)]
            elif items:
                return items
        ours = {r.target: r.digest for r in before.values() if r.kind in ("rule", "vacation") and r.target
                and r.digest and r.state in ("moved", "held")}
        if not wanted and not ours:
            return []
        if self.central_sieve is None:
            return [Item(i.kind, i.name, "not-moved", "the central host has no ManageSieve (central.sieve_port is "
                         "null); tell the user to set it up again") for _n, _t, _a, items in wanted for i in items]
        out: list[Item] = []
        with self.central_sieve() as conn:
            active, names = conn.listing()
            for name, text, turn_on, items in wanted:
                done, now_active = self._one_script(conn, name, text, turn_on, items, names, active, ours)
                out += done
                if now_active:
                    active = name
            gone = set(ours) - {name for name, *_ in wanted}
            for name in sorted(gone & set(names)):
                if sieve.digest(conn.get(name)) == ours[name]:
                    if active == name:
                        conn.activate("")
                    conn.delete(name)
                    log.info("%s: script %s deleted at the source: removed from the central host",
                             self.mailbox.email, name)
        return out

    def _one_script(self, conn: sieve.ManageSieve, name: str, text: str, turn_on: bool, items: list[Item],
                    names: list[str], active: str | None, ours: dict[str, str]) -> tuple[list[Item], bool]:
        """The script written (unless someone else's is there), and whether it is the active one now."""
        written = sieve.digest(text)

        def done(state_override: str | None = None, why: str | None = None) -> list[Item]:
            out = []
            for item in items:
                if state_override is not None:
                    out.append(Item(item.kind, item.name, state_override, why or item.reason))
                else:
                    out.append(Item(item.kind, item.name, item.state, item.reason, target=name, digest=written))
            return out

        there = sieve.digest(conn.get(name)) if name in names else None
        # A script there that is exactly what would be written is this one, whatever the record says (written by
        # a pass whose record was lost: a crash between the two, a store restored from a backup).
        if there is not None and there != written:
            if name not in ours:
                return done("not-moved", f"a script named {name!r} already exists on the central host (not "
                                         "written by govmigrate); left as it is"), False
            if there != ours[name]:
                return done("not-moved", f"the script {name!r} was changed on the central host since it was "
                                         "moved; left as it is"), False
        objection = conn.check(text)
        if objection is not None:
            return done("not-moved", f"the central host refuses the script: {objection}"), False
        if there != written:
            conn.put(name, text)
        result = done()
        if not turn_on or active == name:
            return result, active == name
        if active is None or active in ours:
            conn.activate(name)
            return result, True
        return [Item(i.kind, i.name, "held" if i.state == "moved" else i.state,
                     f"{i.reason}; not turned on: the central host already has another active script ({active!r}) "
                     "that govmigrate did not write", i.target, i.digest) for i in result], False

    # -- access lists ----------------------------------------------------------------------------------------

    def _grants(self, grants: list[acl.Grant], before: dict) -> list[Item]:
        planned = self.planner.grants(grants)
        wrote = {r.target: r.digest for r in before.values() if r.kind == "sharing" and r.target and r.digest
                 and r.state == "moved"}
        if not planned and not wrote:
            return []
        client = self.dest.session.client
        if not self.dest.session.has("ACL"):
            return [Item(i.kind, i.name, "not-moved", "the central host does not offer access lists (IMAP ACL)")
                    for *_x, i in planned]
        current: dict[str, dict[str, str]] = {}

        def acl_of(folder: str) -> dict[str, str]:
            if folder not in current:
                current[folder] = acl.central_acl(client, folder)
            return current[folder]

        out = []
        targets = set()
        for _grant, folder, who, item in planned:
            if folder is None or who is None:
                out.append(item)
                continue
            targets.add(item.target)
            there = acl_of(folder).get(who)
            earlier = wrote.get(item.target)
            if there is not None and there != item.digest and there != earlier:
                out.append(Item(item.kind, item.name, "not-moved",
                                f"{who} already has other rights on the central folder ({there}), not set by "
                                "govmigrate; left as they are"))
                continue
            if there != item.digest:
                try:
                    acl.set_rights(client, folder, who, item.digest or "")
                except Exception as exc:       # the central host refused this one; the others still go
                    error = describe_failure(exc, self.dest.session.endpoint)
                    if error.transient:
                        raise error
                    out.append(Item(item.kind, item.name, "failed", f"the central host refused it: {error.message}"))
                    continue
            out.append(item)
        for target in sorted(set(wrote) - targets):
            folder, _tab, who = target.partition("\t")
            try:
                if acl_of(folder).get(who) == wrote[target]:
                    acl.delete_rights(client, folder, who)
            except Exception as exc:   # the folder itself may be gone
                log.info("%s: removing %s's rights on %s: %s", self.mailbox.email, who, folder, exc)
        return out


# -- wiring ----------------------------------------------------------------------------------------------------

def source_opener(project: Project, sources: Any, source: Source, email: str,
                  login: str) -> Callable[[], sieve.ManageSieve] | None:
    """Opens the source's ManageSieve as the user (None: an Exchange source, or no ``sieve_port``)."""
    server = source.server
    if not isinstance(server, ImapServer) or server.sieve_port is None:
        return None
    port = server.sieve_port

    def open_() -> sieve.ManageSieve:
        creds = sources.credentials(source)
        password = sources.user_password(source, email) if creds.method == "user_password" else None
        return sieve.ManageSieve(sieve.sieve_endpoint(sources.endpoint(source), port), creds, login, password)
    return open_


def central_opener(project: Project, central: Any, email: str) -> Callable[[], sieve.ManageSieve] | None:
    port = project.config.central.sieve_port
    if port is None:
        return None
    return lambda: sieve.ManageSieve(sieve.sieve_endpoint(central.endpoint, port), central.credentials(), email)


class _LoginsOnDemand(Mapping):
    """The source's login → address map, read from the store the first time a name is looked up: most mailboxes
    share no folder, and reading every user of the source for each mailbox of a pass was most of a nightly pass's
    own work at 5,000 mailboxes."""

    def __init__(self, store: Any, source: Source) -> None:
        self._store, self._source = store, source
        self._map: dict[str, str] | None = None

    def _loaded(self) -> dict[str, str]:
        if self._map is None:
            self._map = logins(self._store, self._source)
        return self._map

    def __getitem__(self, key: str) -> str:
        return self._loaded()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._loaded())

    def __len__(self) -> int:
        return len(self._loaded())


def logins(store: Any, source: Source) -> dict[str, str]:
    """The source's login names (lower case) → the users' addresses, as the user list gave them."""
    return {m.login.lower(): m.email for m in store.mailboxes(source_id=source.id)}


def settings_pass(project: Project, sources: Any, central: Any, store: Any, mailbox: MailboxRow, source: Source,
                  src: Any, dest: Any, *, folders: list | None = None) -> SettingsReport:
    """Move ``mailbox``'s settings after its mail (the sync engine's hook), record them, and say what changed;
    ``folders``: the source's folders as the pass listed them."""
    planner = Planner(project, source, mailbox.email, _LoginsOnDemand(store, source),
                      {f.source_name: f.dest_name for f in store.folders(mailbox.id)})
    reader = SourceReader(project, source, source_opener(project, sources, source, mailbox.email, mailbox.login))
    recorded = store.settings(mailbox.id, "sync")
    before = {(r.kind, r.name, r.state) for r in recorded}
    report = SettingsPass(store, mailbox, planner, reader, src, dest,
                          central_opener(project, central, mailbox.email), folders=folders, recorded=recorded).run()
    after = {(i.kind, i.name, i.state) for i in report.items}
    if after != before:
        store.add_event(f"mailbox/{mailbox.email}", "settings", summary(report.items))
    return report


def summary(items: list[Item]) -> str:
    """"rules: 3 moved, 1 held; sharing: 2 moved; ..." for events and one-line listings."""
    words = {"rule": "rules", "vacation": "out of office", "sharing": "shared folders", "delegate": "delegates"}
    parts = []
    for kind in KINDS:
        counts: dict[str, int] = {}
        for item in items:
            if item.kind == kind and item.name != "*":
                counts[item.state] = counts.get(item.state, 0) + 1
        unknown = [i.reason for i in items if i.kind == kind and i.name == "*"]
        if counts:
            parts.append(f"{words[kind]}: " + ", ".join(f"{n} {STATE_WORDS.get(s, s)}" for s, n in counts.items()))
        elif unknown:
            parts.append(f"{words[kind]}: {unknown[0]}")
    return "; ".join(parts) or "no rules, out-of-office, shared folders or delegates"


def inventory_items(project: Project, sources: Any, source: Source, email: str, login: str,
                    known_logins: dict[str, str], src: Any) -> list[Item]:
    """The inventory's look at a mailbox's settings over an open source mailbox; nothing here fails the
    measurement (what could not be read is an item "not known", with why)."""
    reader = SourceReader(project, source, source_opener(project, sources, source, email, login))
    try:
        found = reader.read(src, login)
    except MigrateError as exc:
        return [_unknown(kind, exc.message) for kind in KINDS]
    return inventory(Planner(project, source, email, known_logins), found)
