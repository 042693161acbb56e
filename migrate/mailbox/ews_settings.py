"""An Exchange mailbox's inbox rules, out-of-office settings, folder permissions and delegates, read over EWS
beside the mail that :mod:`migrate.mailbox.ews` reads (its session, retries and failures).

exchangelib reads the rules (GetInboxRules), the out-of-office settings (GetUserOofSettings) and the delegates
(GetDelegate); each becomes a plain record here. Folder permissions come from one GetFolder of every mail folder
asking for ``folder:PermissionSet`` (FindFolder cannot return it), read from the XML by the schema's element
names: exchangelib's own Permission class looks for ``CalendarPermissionLevel`` and ``CanCreateSubfolders``
where Exchange writes ``PermissionLevel`` and ``CanCreateSubFolders``, so its levels would all read None.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from exchangelib.fields import FieldPath
from exchangelib.folders import Folder
from exchangelib.items import ID_ONLY
from exchangelib.properties import FolderId, Mailbox
from exchangelib.services import GetDelegate, GetInboxRules, GetUserOofSettings

from migrate.mailbox.acl import FolderPermission
from migrate.mailbox.ews import TNS, EwsFolderInfo, EwsMailbox, _RawGetFolder
from migrate.mailbox.exchange_rules import ExchangeRule, OutOfOffice

PERMISSION_FIELDS = [FieldPath(field=Folder.get_field_by_fieldname("permission_set"))]
#: Folders asked for in one GetFolder.
PERMISSION_BATCH = 50


@dataclass(frozen=True)
class Delegate:
    user: str                  # SMTP address
    #: folder (calendar, tasks, inbox, contacts, notes, journal) → Exchange's level (Reviewer, Author, Editor)
    folders: dict[str, str] = field(default_factory=dict)
    sees_private: bool = False
    gets_meeting_copies: bool = False


def rules(box: EwsMailbox) -> list[ExchangeRule]:
    """The mailbox's inbox rules (server-side and those Exchange marks client-only or in error)."""
    found = box._call("read inbox rules", lambda: list(GetInboxRules(account=box.account).call(box.email)))
    out = []
    for rule in found:
        if isinstance(rule, Exception):
            box._raise_if_error(rule)
        if rule is None:
            continue
        broken = None
        if rule.is_not_supported:
            broken = "Exchange marks it as a client-only rule (it ran in Outlook, not on the server)"
        elif rule.is_in_error:
            broken = "Exchange marks it as in error (a folder or address it names is gone)"
        out.append(ExchangeRule(name=rule.display_name or "", priority=rule.priority or 0,
                                enabled=rule.is_enabled is not False, conditions=_values(rule.conditions),
                                exceptions=_values(rule.exceptions), actions=_values(rule.actions), broken=broken))
    return out


def _values(element: Any) -> dict[str, Any]:
    """The fields an exchangelib Conditions/Exceptions/Actions element sets, as plain values."""
    if element is None:
        return {}
    out: dict[str, Any] = {}
    for f in element.FIELDS:
        value = getattr(element, f.name, None)
        if value is None or value is False or (isinstance(value, list) and not value):
            continue
        out[f.name] = _plain(value)
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if hasattr(value, "email_address"):                   # an Address
        return value.email_address
    if hasattr(value, "minimum_size"):                    # WithinSizeRange
        return (value.minimum_size, value.maximum_size)
    if hasattr(value, "start_date_time"):                 # WithinDateRange
        return (value.start_date_time, value.end_date_time)
    if hasattr(value, "distinguished_folder_id"):         # MoveToFolder / CopyToFolder
        if value.folder_id is not None:
            return value.folder_id.id
        if value.distinguished_folder_id is not None:
            return value.distinguished_folder_id.id
        return None
    if hasattr(value, "id") and hasattr(value, "changekey"):   # an ItemId (a reply template)
        return value.id
    return value


def out_of_office(box: EwsMailbox) -> OutOfOffice:
    settings = box._call("read out-of-office settings", lambda: GetUserOofSettings(account=box.account).get(
        mailbox=Mailbox(email_address=box.email)))
    return OutOfOffice(state=settings.state or "Disabled", audience=settings.external_audience or "All",
                       start=_aware(settings.start), end=_aware(settings.end),
                       internal=settings.internal_reply or "", external=settings.external_reply or "")


def _aware(when: Any) -> dt.datetime | None:
    """A plain aware datetime in UTC (exchangelib's EWSDateTime refuses the standard library's zones)."""
    if when is None:
        return None
    if when.tzinfo is None:
        return dt.datetime(*when.timetuple()[:6], tzinfo=dt.UTC)
    return dt.datetime.fromtimestamp(when.timestamp(), dt.UTC)


def delegates(box: EwsMailbox) -> list[Delegate]:
    found = box._call("read delegates", lambda: list(GetDelegate(account=box.account).call(
        user_ids=None, include_permissions=True)))
    out = []
    for d in found:
        if isinstance(d, Exception):
            box._raise_if_error(d)
        if d is None or d.user_id is None:
            continue
        perms = d.delegate_permissions
        folders = {}
        if perms is not None:
            for name in ("calendar", "tasks", "inbox", "contacts", "notes", "journal"):
                level = getattr(perms, f"{name}_folder_permission_level", None)
                if level and level != "None":
                    folders[name] = level
        out.append(Delegate(d.user_id.primary_smtp_address or d.user_id.display_name or "?", folders,
                            bool(d.view_private_items), bool(d.receive_copies_of_meeting_messages)))
    return out


def permissions(box: EwsMailbox, folders: list[EwsFolderInfo]) -> dict[str, list[FolderPermission]]:
    """Folder id → the entries of its PermissionSet, for ``folders``."""
    out: dict[str, list[FolderPermission]] = {}
    for start in range(0, len(folders), PERMISSION_BATCH):
        batch = folders[start:start + PERMISSION_BATCH]
        elems = box._call("read folder permissions", lambda batch=batch: list(_RawGetFolder(
            account=box.account).call(folders=[FolderId(id=f.folder_id) for f in batch],
                                      additional_fields=PERMISSION_FIELDS, shape=ID_ONLY)))
        for info, elem in zip(batch, elems, strict=False):
            box._raise_if_error(elem)
            out[info.folder_id] = _permission_set(elem)
    return out


def _permission_set(elem: Any) -> list[FolderPermission]:
    found = []
    for perm in elem.iterfind(f"{{{TNS}}}PermissionSet/{{{TNS}}}Permissions/{{{TNS}}}Permission"):
        uid = perm.find(f"{{{TNS}}}UserId")
        user = None
        if uid is not None:
            user = (uid.findtext(f"{{{TNS}}}DistinguishedUser") or uid.findtext(f"{{{TNS}}}PrimarySmtpAddress")
                    or uid.findtext(f"{{{TNS}}}DisplayName") or uid.findtext(f"{{{TNS}}}SID"))

        def text(tag: str, default: str = "", perm: Any = perm) -> str:
            return (perm.findtext(f"{{{TNS}}}{tag}") or default).strip()

        found.append(FolderPermission(
            user=(user or "?").strip(), level=text("PermissionLevel", "Custom"),
            read=text("ReadItems") == "FullDetails", visible=text("IsFolderVisible") == "true",
            create=text("CanCreateItems") == "true", subfolders=text("CanCreateSubFolders") == "true",
            owner=text("IsFolderOwner") == "true", edit=text("EditItems", "None"), delete=text("DeleteItems", "None")))
    return found
