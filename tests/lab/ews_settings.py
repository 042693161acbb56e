"""Inbox rules, out-of-office settings, folder permissions and delegates for the lab's EWS responder, served as
Exchange serves them: GetInboxRules (t:Rule with Conditions, Exceptions and Actions in schema order),
GetUserOofSettings (the OofSettings beside, not inside, the response message), GetDelegate (DelegateUser
response messages) and the PermissionSet GetFolder returns when ``folder:PermissionSet`` is asked for (with the
individual rights Exchange derives from each permission level).

They live on the responder's mailboxes (:class:`~tests.lab.ews_store.LabMailbox` ``rules``, ``oof``,
``delegates``; :class:`~tests.lab.ews_store.LabFolder` ``permissions``); tests set them with the responder's
``set_rules``, ``set_oof``, ``set_permissions`` and ``set_delegates``, or take :func:`corpus_for`.
"""

from __future__ import annotations

import base64
import datetime as dt
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

M = "http://schemas.microsoft.com/exchange/services/2006/messages"
T = "http://schemas.microsoft.com/exchange/services/2006/types"


def _el(parent: ET.Element, ns: str, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, f"{{{ns}}}{tag}", attrs)
    if text is not None:
        element.text = text
    return element


def _b(value: bool) -> str:
    return "true" if value else "false"


# -- inbox rules -------------------------------------------------------------------------------------------

@dataclass
class LabRule:
    """An inbox rule. ``conditions``/``exceptions``/``actions`` map the schema's element names to values: a list
    of strings (``ContainsSubjectStrings``, ``Categories``, ``AssignCategories``), a list of addresses
    (``FromAddresses``, ``ForwardToRecipients``...), a bool, a text (``Importance``, ``MarkImportance``), a
    (minimum, maximum) pair (``WithinSizeRange``), or for ``MoveToFolder``/``CopyToFolder`` a folder: a display
    path tuple of the mailbox, or a distinguished id string ("deleteditems")."""

    name: str
    priority: int
    conditions: dict[str, Any] = field(default_factory=dict)
    actions: dict[str, Any] = field(default_factory=dict)
    exceptions: dict[str, Any] = field(default_factory=dict)
    enabled: bool = True
    not_supported: bool = False
    in_error: bool = False


ADDRESS_LISTS = ("FromAddresses", "SentToAddresses", "ForwardAsAttachmentToRecipients", "ForwardToRecipients",
                 "RedirectToRecipients", "SendSMSAlertToRecipients")


def _predicate(parent: ET.Element, tag: str, values: dict[str, Any]) -> None:
    if not values:
        return
    element = _el(parent, T, tag)
    for name in sorted(values):        # the schema's order of RulePredicatesType is alphabetical
        value = values[name]
        if name == "WithinSizeRange":
            size = _el(element, T, name)
            _el(size, T, "MinimumSize", str(value[0]))
            _el(size, T, "MaximumSize", str(value[1]))
        elif name in ADDRESS_LISTS:
            _addresses(element, name, value)
        elif isinstance(value, bool):
            _el(element, T, name, _b(value))
        elif isinstance(value, (list, tuple)):
            strings = _el(element, T, name)
            for v in value:
                _el(strings, T, "String", v)
        else:
            _el(element, T, name, str(value))


def _addresses(parent: ET.Element, tag: str, addresses: list[str]) -> None:
    element = _el(parent, T, tag)
    for address in addresses:
        a = _el(element, T, "Address")
        _el(a, T, "EmailAddress", address)
        _el(a, T, "RoutingType", "SMTP")


#: RuleActionsType, in schema order.
ACTION_ORDER = ("AssignCategories", "CopyToFolder", "Delete", "ForwardAsAttachmentToRecipients",
                "ForwardToRecipients", "MarkImportance", "MarkAsRead", "MoveToFolder", "PermanentDelete",
                "RedirectToRecipients", "SendSMSAlertToRecipients", "ServerReplyWithMessage", "StopProcessingRules")


def render_rules(parent: ET.Element, mailbox: Any) -> None:
    rules = _el(parent, M, "InboxRules")
    for n, rule in enumerate(sorted(mailbox.rules, key=lambda r: r.priority), start=1):
        element = _el(rules, T, "Rule")
        _el(element, T, "RuleId", base64.b64encode(f"rule|{mailbox.email}|{n}".encode()).decode())
        _el(element, T, "DisplayName", rule.name)
        _el(element, T, "Priority", str(rule.priority))
        _el(element, T, "IsEnabled", _b(rule.enabled))
        if rule.not_supported:
            _el(element, T, "IsNotSupported", "true")
        if rule.in_error:
            _el(element, T, "IsInError", "true")
        _predicate(element, "Conditions", rule.conditions)
        _predicate(element, "Exceptions", rule.exceptions)
        actions = _el(element, T, "Actions")
        for name in ACTION_ORDER:
            if name not in rule.actions:
                continue
            value = rule.actions[name]
            if name in ("MoveToFolder", "CopyToFolder"):
                target = _el(actions, T, name)
                if isinstance(value, str):
                    _el(target, T, "DistinguishedFolderId", Id=value)
                else:
                    folder = mailbox.folder(*value)
                    _el(target, T, "FolderId", Id=folder.folder_id, ChangeKey=folder.change_key)
            elif name in ADDRESS_LISTS:
                _addresses(actions, name, value)
            elif name == "AssignCategories":
                strings = _el(actions, T, name)
                for v in value:
                    _el(strings, T, "String", v)
            elif isinstance(value, bool):
                _el(actions, T, name, _b(value))
            else:
                _el(actions, T, name, str(value))


# -- out of office -------------------------------------------------------------------------------------------

@dataclass
class LabOof:
    state: str = "Disabled"                   # Enabled | Scheduled | Disabled
    audience: str = "All"                     # None | Known | All
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    internal: str = ""
    external: str = ""


def render_oof(response: ET.Element, oof: LabOof | None) -> None:
    oof = oof or LabOof()
    settings = _el(response, T, "OofSettings")
    _el(settings, T, "OofState", oof.state)
    _el(settings, T, "ExternalAudience", oof.audience)
    # Exchange always sends a duration: the scheduled one, else today's (which a client must ignore).
    start = oof.start or dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    end = oof.end or start + dt.timedelta(days=1)
    duration = _el(settings, T, "Duration")
    _el(duration, T, "StartTime", start.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    _el(duration, T, "EndTime", end.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    for tag, text in (("InternalReply", oof.internal), ("ExternalReply", oof.external)):
        reply = _el(settings, T, tag)
        _el(reply, T, "Message", text)
    _el(response, M, "AllowExternalOof", "All")


# -- folder permissions ------------------------------------------------------------------------------------

#: PermissionLevel → (CanCreateItems, CanCreateSubFolders, IsFolderOwner, IsFolderVisible, IsFolderContact,
#: EditItems, DeleteItems, ReadItems), as Exchange derives the rights from a level.
LEVELS = {
    "None": (False, False, False, False, False, "None", "None", "None"),
    "Owner": (True, True, True, True, True, "All", "All", "FullDetails"),
    "PublishingEditor": (True, True, False, True, False, "All", "All", "FullDetails"),
    "Editor": (True, False, False, True, False, "All", "All", "FullDetails"),
    "PublishingAuthor": (True, True, False, True, False, "Owned", "Owned", "FullDetails"),
    "Author": (True, False, False, True, False, "Owned", "Owned", "FullDetails"),
    "NoneditingAuthor": (True, False, False, True, False, "None", "Owned", "FullDetails"),
    "Reviewer": (False, False, False, True, False, "None", "None", "FullDetails"),
    "Contributor": (True, False, False, True, False, "None", "None", "None"),
}


@dataclass(frozen=True)
class LabPermission:
    user: str            # an SMTP address, or "Default" / "Anonymous"
    level: str = "None"


def render_permissions(parent: ET.Element, folder: Any) -> None:
    entries = list(folder.permissions)
    users = {p.user for p in entries}
    for distinguished in ("Default", "Anonymous"):
        if distinguished not in users:
            entries.append(LabPermission(distinguished))
    perms = _el(_el(parent, T, "PermissionSet"), T, "Permissions")
    for p in entries:
        element = _el(perms, T, "Permission")
        uid = _el(element, T, "UserId")
        if p.user in ("Default", "Anonymous"):
            _el(uid, T, "DistinguishedUser", p.user)
        else:
            _el(uid, T, "SID", "S-1-5-21-" + str(abs(hash(p.user)) % 10**9))
            _el(uid, T, "PrimarySmtpAddress", p.user)
            _el(uid, T, "DisplayName", p.user.split("@")[0])
        create, subfolders, owner, visible, contact, edit, delete, read = LEVELS[p.level]
        for tag, value in (("CanCreateItems", _b(create)), ("CanCreateSubFolders", _b(subfolders)),
                           ("IsFolderOwner", _b(owner)), ("IsFolderVisible", _b(visible)),
                           ("IsFolderContact", _b(contact)), ("EditItems", edit), ("DeleteItems", delete),
                           ("ReadItems", read), ("PermissionLevel", p.level)):
            _el(element, T, tag, value)


# -- delegates -----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LabDelegate:
    user: str
    calendar: str = "None"       # None | Reviewer | Author | Editor
    inbox: str = "None"
    contacts: str = "None"
    tasks: str = "None"
    view_private: bool = False
    meeting_copies: bool = False


def render_delegates(response: ET.Element, mailbox: Any) -> None:
    messages = _el(response, M, "ResponseMessages")
    for d in mailbox.delegates:
        msg = _el(messages, M, "DelegateUserResponseMessageType", ResponseClass="Success")
        _el(msg, M, "ResponseCode", "NoError")
        user = _el(msg, M, "DelegateUser")
        uid = _el(user, T, "UserId")
        _el(uid, T, "PrimarySmtpAddress", d.user)
        _el(uid, T, "DisplayName", d.user.split("@")[0])
        perms = _el(user, T, "DelegatePermissions")
        for tag, level in (("CalendarFolderPermissionLevel", d.calendar), ("TasksFolderPermissionLevel", d.tasks),
                           ("InboxFolderPermissionLevel", d.inbox), ("ContactsFolderPermissionLevel", d.contacts)):
            _el(perms, T, tag, level)
        _el(user, T, "ReceiveCopiesOfMeetingMessages", _b(d.meeting_copies))
        _el(user, T, "ViewPrivateItems", _b(d.view_private))
    _el(response, M, "DeliverMeetingRequests", "DelegatesAndMe")


# -- a small corpus ----------------------------------------------------------------------------------------

def corpus_for(email: str) -> dict[str, Any]:
    """What a typical user has: a rule filing budget mail into a project folder, one marking mail from the
    minister read and flagged, one forwarding to a private address outside the government, one Exchange-only
    condition (a category), an out-of-office that is on, and an assistant as delegate to the calendar."""
    local, domain = email.split("@")
    return {
        "rules": [
            LabRule("Budget to project", 1, {"ContainsSubjectStrings": ["budget"]},
                    {"MoveToFolder": ("Projects", "Budget 2025"), "StopProcessingRules": True}),
            LabRule("Minister's mail", 2, {"FromAddresses": [f"minister@{domain}"]},
                    {"MarkAsRead": True, "MarkImportance": "High"}),
            LabRule("Copy to my phone", 3, {}, {"ForwardToRecipients": [f"{local}.private@gmail.example"]}),
            LabRule("Tagged for audit", 4, {"Categories": ["Audit"]}, {"MoveToFolder": ("Personal",)}),
        ],
        "oof": LabOof("Enabled", "All", internal="I am on leave until Monday.",
                      external="I am out of the office; for urgent matters call the Ministry."),
        "delegates": [LabDelegate(f"assistant@{domain}", calendar="Editor", inbox="Reviewer")],
    }
