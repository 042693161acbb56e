"""Deterministic mail corpus for the lab: realistic ministry mailboxes, generated from a seed.

The same seed always gives the same bytes, flags and dates, so tests can compare what a server reports
with what was written. Messages are canonical CRLF text (as an IMAP server returns them); they cover
plain and multipart mail with attachments, non-ASCII and 8-bit headers, sizes from about 1 KB to
several MB, missing and shared Message-IDs, exact duplicates, and one malformed message per mailbox.
Folders nest, contain spaces and non-ASCII characters, and some are empty or unsubscribed.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import random
from dataclasses import dataclass, field
from email.header import Header
from email.utils import format_datetime

WORDS = ["ministry", "budget", "report", "meeting", "minutes", "project", "health", "education", "finance", "procurement", "tender", "review", "approval", "draft", "policy", "circular", "memo", "agenda", "schedule", "training", "workshop", "audit", "payroll", "contract", "invoice", "vendor", "network", "server", "upgrade", "citizens", "service", "delivery", "regional", "office", "district", "clinic", "school", "permit", "licence", "customs", "revenue", "quarterly", "annual", "statistics", "survey", "presupuesto", "reunión", "informe", "educación", "salud", "capacitación", "licitación", "aprobación", "distrito", "oficina", "señor", "señora", "acción", "revisión", "país", "año", "niño"]
FIRST = ["Maria", "John", "Ana", "Peter", "Sofía", "Luis", "Grace", "Kevin", "Zoë", "José", "Aisha", "Tomás",
         "Elena", "Marcus", "Ngozi", "Chen", "Isabel", "Omar", "Ruth", "Dmitri"]
LAST = ["González", "Smith", "Young", "Chan", "Núñez", "Castillo", "Williams", "Flowers", "Reyes", "Bennett",
        "Ramírez", "Usher", "Müller", "Okafor", "Ortiz", "Leslie", "Pérez", "Gordon", "Ali", "Vernon"]
KEYWORDS = ["$Forwarded", "$MDNSent", "ProjectX", "Urgent_Review", "$Label1"]

# Special-use attribute → folder name, per source layout.
LAYOUT_SPECIAL = {
    "modern": {"\\Sent": "Sent", "\\Drafts": "Drafts", "\\Trash": "Trash", "\\Junk": "Junk",
               "\\Archive": "Archive"},
    "legacy": {"\\Sent": "Sent Items", "\\Drafts": "Drafts", "\\Trash": "Deleted Items",
               "\\Junk": "Junk E-mail", "\\Archive": "Archives"},
}
# Names of user folders (path components); non-ASCII, spaces, nesting three deep.
USER_FOLDERS = [
    ("Projects",),
    ("Projects", "Budget 2025"),
    ("Projects", "Budget 2025", "Q1 Reviews"),
    ("Projects", "Réunions"),
    ("Correspondence", "Ministerio de Educación"),
    ("Correspondence", "Partners & Donors"),
    ("Personal",),
    ("Старые письма",),
    ("会议",),
]


@dataclass(frozen=True)
class CorpusMessage:
    raw: bytes
    flags: tuple[str, ...]
    internaldate: dt.datetime

    @property
    def size(self) -> int:
        return len(self.raw)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.raw).hexdigest()


@dataclass
class CorpusFolder:
    path: tuple[str, ...]               # ("INBOX",) or ("Projects", "Budget 2025")
    messages: list[CorpusMessage] = field(default_factory=list)
    subscribed: bool = True
    special_use: str | None = None      # "\\Sent", ...

    @property
    def is_inbox(self) -> bool:
        return self.path == ("INBOX",)

    def server_name(self, separator: str = "/", prefix: str = "") -> str:
        """The folder's name on a server with this hierarchy separator and personal namespace prefix."""
        if self.is_inbox:
            return "INBOX"
        return prefix + separator.join(self.path)

    @property
    def size(self) -> int:
        return sum(m.size for m in self.messages)


@dataclass
class CorpusMailbox:
    email: str
    login: str
    password: str
    display_name: str
    folders: list[CorpusFolder]
    user_flags: tuple[str, ...] = ()    # user-list flags: pilot, vip

    @property
    def messages(self) -> int:
        return sum(len(f.messages) for f in self.folders)

    @property
    def size(self) -> int:
        return sum(f.size for f in self.folders)

    def folder(self, *path: str) -> CorpusFolder:
        for f in self.folders:
            if f.path == tuple(path):
                return f
        raise KeyError(path)


@dataclass(frozen=True)
class SizeProfile:
    """How big messages are: (weight, min bytes, max bytes) buckets."""

    buckets: tuple[tuple[float, int, int], ...]

    def pick(self, rng: random.Random) -> int:
        r = rng.random() * sum(b[0] for b in self.buckets)
        for weight, low, high in self.buckets:
            if r < weight:
                return rng.randint(low, high)
            r -= weight
        return self.buckets[-1][1]


#: Small and quick, with a few multi-megabyte messages: for tests.
TEST_SIZES = SizeProfile(((0.2, 900, 2_000), (0.65, 2_000, 20_000), (0.13, 20_000, 300_000),
                          (0.02, 1_500_000, 3_500_000)))
#: The benchmark's reference shape: mostly 2–20 KB, a tail up to 2 MB (about 40 KB on average).
BENCH_SIZES = SizeProfile(((0.86, 2_000, 20_000), (0.105, 20_000, 200_000), (0.035, 200_000, 2_000_000)))


def _words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def _paragraphs(rng: random.Random, approx_bytes: int) -> str:
    lines, size = [], 0
    while size < approx_bytes:
        line = _words(rng, rng.randint(6, 11)).capitalize() + "."
        lines.append(line)
        size += len(line.encode()) + 2
    return "\r\n".join(lines)


def _encoded(text: str) -> str:
    """RFC 2047 encoding for a header value with non-ASCII characters."""
    if text.isascii():
        return text
    return Header(text, "utf-8").encode(linesep="\r\n")


def _addr(name: str, email: str, *, encode: bool = True) -> str:
    return f"{_encoded(name) if encode else name} <{email}>"


class _Builder:
    """Builds one mailbox's messages; every random choice comes from ``rng``."""

    def __init__(self, rng: random.Random, email: str, name: str, domain: str, sizes: SizeProfile,
                 base_date: dt.datetime) -> None:
        self.rng = rng
        self.email = email
        self.name = name
        self.domain = domain
        self.sizes = sizes
        self.base_date = base_date
        self.serial = 0

    def person(self) -> tuple[str, str]:
        first, last = self.rng.choice(FIRST), self.rng.choice(LAST)
        local = (first + "." + last).lower().encode("ascii", "ignore").decode() or "someone"
        domain = self.rng.choice([self.domain, "gov.bz", "partner.org", "example.com"])
        return f"{first} {last}", f"{local}@{domain}"

    def date(self) -> dt.datetime:
        seconds = self.rng.randint(0, 5 * 365 * 86400)
        tz = dt.timezone(dt.timedelta(hours=self.rng.choice([-6, -5, 0, 1, 2, 8])))
        return (self.base_date - dt.timedelta(seconds=seconds)).astimezone(tz).replace(microsecond=0)

    def message(self, *, outgoing: bool = False, kind: str | None = None,
                message_id: str | bool | None = True) -> bytes:
        rng = self.rng
        self.serial += 1
        target = self.sizes.pick(rng)
        kind = kind or rng.choices(["plain", "alternative", "attachment", "nonascii"], [45, 15, 25, 15])[0]
        other_name, other_email = self.person()
        if outgoing:
            frm, to = (self.name, self.email), (other_name, other_email)
        else:
            frm, to = (other_name, other_email), (self.name, self.email)
        date = self.date()
        subject = _words(rng, rng.randint(3, 8)).capitalize()
        if kind == "nonascii":
            subject = rng.choice(["Reunión de presupuesto", "Informe anual — revisión", "Отчёт за квартал",
                                  "会议纪要", "Acción requerida: licitación Nº 12"]) + " " + subject
        headers = [
            f"Return-Path: <{frm[1]}>",
            f"Received: from mx.{self.domain} (mx.{self.domain} [10.{rng.randint(0, 255)}.{rng.randint(0, 255)}."
            f"{rng.randint(1, 254)}])\r\n\tby mail.{self.domain} with ESMTPS id {rng.getrandbits(48):012x}\r\n\t"
            f"for <{to[1]}>; {format_datetime(date)}",
            f"Date: {format_datetime(date)}",
            f"From: {_addr(*frm)}",
            f"To: {_addr(*to)}",
        ]
        if rng.random() < 0.3:
            cc_name, cc_email = self.person()
            headers.append(f"Cc: {_addr(cc_name, cc_email)}")
        headers.append(f"Subject: {_encoded(subject)}")
        if message_id is True:
            headers.append(f"Message-ID: <{rng.getrandbits(64):016x}.{self.serial}@mail.{self.domain}>")
        elif isinstance(message_id, str):
            headers.append(f"Message-ID: {message_id}")
        headers.append("MIME-Version: 1.0")
        head = "\r\n".join(headers) + "\r\n"
        body_budget = max(200, target - len(head.encode()))
        if kind == "attachment":
            boundary = f"=_part_{rng.getrandbits(64):016x}"
            text = _paragraphs(rng, min(2_000, body_budget // 4))
            payload_size = max(64, int((body_budget - len(text) - 400) * 3 / 4 * 76 / 78))
            blob = base64.encodebytes(rng.randbytes(payload_size)).replace(b"\n", b"\r\n").decode()
            filename = rng.choice(["report.pdf", "budget-2025.xlsx", "minutes.docx", "photo.jpg",
                                   "información.pdf"])
            if filename.isascii():
                fname_param = f'filename="{filename}"'
            else:  # RFC 2231 parameter encoding
                fname_param = "filename*=utf-8''" + "".join(
                    c if c.isascii() and (c.isalnum() or c in ".-") else "".join(f"%{b:02X}" for b in c.encode())
                    for c in filename)
            body = (
                f"Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n"
                "This is a multi-part message in MIME format.\r\n"
                f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
                f"{text}\r\n"
                f"--{boundary}\r\nContent-Type: application/octet-stream; name=\"attachment\"\r\n"
                f"Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; {fname_param}\r\n\r\n"
                f"{blob}"
                f"--{boundary}--\r\n"
            )
        elif kind == "alternative":
            boundary = f"=_alt_{rng.getrandbits(64):016x}"
            text = _paragraphs(rng, body_budget // 2 - 200)
            html = "<html><body><p>" + text.replace("\r\n", "</p>\r\n<p>") + "</p></body></html>"
            body = (
                f"Content-Type: multipart/alternative; boundary=\"{boundary}\"\r\n\r\n"
                f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
                f"{text}\r\n--{boundary}\r\nContent-Type: text/html; charset=utf-8\r\n"
                f"Content-Transfer-Encoding: 8bit\r\n\r\n{html}\r\n--{boundary}--\r\n"
            )
        else:
            text = _paragraphs(rng, body_budget)
            body = f"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{text}\r\n"
        return (head + body).encode("utf-8")

    def malformed(self) -> bytes:
        """Broken in the ways real archives are: raw 8-bit header, no MIME-Version, a boundary that never
        closes, invalid base64 and a header line without a colon."""
        rng = self.rng
        self.serial += 1
        date = self.date()
        boundary = f"broken{rng.getrandbits(32):08x}"
        return (
            f"From: Sistema de Nómina <nomina@{self.domain}>\r\n"
            f"To: {self.email}\r\n"
            f"Subject: Nómina — año {date.year} (8-bit, unencoded)\r\n"
            f"Date: {format_datetime(date)}\r\n"
            "this line is not a header\r\n"
            f"Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n"
            f"--{boundary}\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            "This is !!! not base64 @@@\r\n"
            f"--{boundary}\r\nContent-Type: text/plain\r\n\r\nthe closing boundary never comes\r\n"
        ).encode()

    def flags(self, folder: CorpusFolder, date_rank: float) -> tuple[str, ...]:
        rng = self.rng
        flags = []
        if folder.special_use == "\\Drafts":
            flags.append("\\Draft")
            if rng.random() < 0.5:
                flags.append("\\Seen")
            return tuple(flags)
        if folder.special_use == "\\Sent" or rng.random() < 0.75 + 0.2 * date_rank:
            flags.append("\\Seen")
        if rng.random() < 0.15:
            flags.append("\\Answered")
        if rng.random() < 0.08:
            flags.append("\\Flagged")
        if rng.random() < 0.1:
            flags.append(rng.choice(KEYWORDS))
        return tuple(flags)


def generate_mailbox(*, seed: str, email: str, login: str, password: str, display_name: str,
                     layout: str = "modern", messages: int = 60, sizes: SizeProfile = TEST_SIZES,
                     user_folders: list[tuple[str, ...]] | None = None, user_flags: tuple[str, ...] = (),
                     edge_cases: bool = True) -> CorpusMailbox:
    """One mailbox of about ``messages`` messages spread over INBOX, special-use and user folders."""
    rng = random.Random(f"{seed}/{email}")
    domain = email.split("@", 1)[1]
    base_date = dt.datetime(2026, 11, 1, 12, 0, tzinfo=dt.UTC)
    builder = _Builder(rng, email, display_name, domain, sizes, base_date)
    specials = LAYOUT_SPECIAL[layout]
    folders = [CorpusFolder(("INBOX",))]
    for attr, name in specials.items():
        folders.append(CorpusFolder((name,), special_use=attr if layout == "modern" else None))
    for path in (USER_FOLDERS if user_folders is None else user_folders):
        folders.append(CorpusFolder(path))
    if edge_cases:
        folders.append(CorpusFolder(("Empty Folder",)))                 # empty, subscribed
        folders.append(CorpusFolder(("Old Unsubscribed",), subscribed=False))

    def role(f: CorpusFolder) -> str | None:
        for attr, name in specials.items():
            if f.path == (name,):
                return attr
        return None

    weights = []
    for f in folders:
        if f.path == ("Empty Folder",):
            weights.append(0)
        elif f.is_inbox:
            weights.append(10)
        elif role(f) == "\\Sent":
            weights.append(4)
        elif role(f) in ("\\Drafts", "\\Junk"):
            weights.append(0.5)
        else:
            weights.append(1.5)
    for i in range(messages):
        folder = rng.choices(folders, weights)[0]
        r = role(folder)
        raw = builder.message(outgoing=r in ("\\Sent", "\\Drafts"),
                              message_id=not rng.random() < 0.04)
        flags = builder.flags(CorpusFolder(folder.path, special_use=r), i / max(1, messages))
        folder.messages.append(CorpusMessage(raw, flags, builder.date()))
    inbox = folders[0]
    if edge_cases:
        # An exact duplicate (same bytes, flags and date) stored twice in one folder: both must arrive.
        if inbox.messages:
            inbox.messages.append(inbox.messages[0])
        # Two different messages sharing one Message-ID: both must arrive.
        shared = f"<shared-{rng.getrandbits(32):08x}@mail.{domain}>"
        inbox.messages.append(CorpusMessage(builder.message(kind="plain", message_id=shared), ("\\Seen",),
                                            builder.date()))
        inbox.messages.append(CorpusMessage(builder.message(kind="plain", message_id=shared), (),
                                            builder.date()))
        # A message with no Message-ID at all.
        inbox.messages.append(CorpusMessage(builder.message(kind="plain", message_id=False),
                                            ("\\Seen", "$Forwarded"), builder.date()))
        # A malformed message: still copied.
        inbox.messages.append(CorpusMessage(builder.malformed(), ("\\Seen",), builder.date()))
        # One several-megabyte message, the kind that strains memory and timeouts.
        big = _Builder(rng, email, display_name, domain, SizeProfile(((1.0, 3_000_000, 3_200_000),)), base_date)
        folders[-3 if len(folders) > 3 else 0].messages.append(
            CorpusMessage(big.message(kind="attachment"), ("\\Seen",), builder.date()))
    for f in folders:
        f.special_use = role(f) if layout == "modern" else None
    return CorpusMailbox(email=email, login=login, password=password, display_name=display_name,
                         folders=folders, user_flags=user_flags)


def big_message(*, seed: str, email: str, size: int, date: dt.datetime | None = None) -> CorpusMessage:
    """One message of about ``size`` bytes with a large attachment (archives, scanned documents)."""
    rng = random.Random(f"{seed}/{email}/big")
    date = date or dt.datetime(2025, 6, 1, 9, 0, tzinfo=dt.UTC)
    builder = _Builder(rng, email, email.split("@")[0], email.split("@")[1], SizeProfile(((1.0, size, size),)), date)
    return CorpusMessage(builder.message(kind="attachment"), ("\\Seen",), date)


def ministry(*, seed: str, domain: str, users: int, layout: str = "modern", messages: int = 60,
             sizes: SizeProfile = TEST_SIZES, login_style: str = "local", edge_cases: bool = True,
             pilot: int = 1, vip: int = 1) -> list[CorpusMailbox]:
    """``users`` mailboxes for one ministry. login_style: ``local`` (jsmith) or ``email``."""
    rng = random.Random(f"{seed}/{domain}/people")
    boxes = []
    used: set[str] = set()
    for i in range(users):
        while True:
            first, last = rng.choice(FIRST), rng.choice(LAST)
            local = f"{first}.{last}".lower().encode("ascii", "ignore").decode().replace("..", ".")
            if local not in used:
                used.add(local)
                break
            if len(used) > 300:
                local = f"user{i:04d}"
                used.add(local)
                break
        email = f"{local}@{domain}"
        login = email if login_style == "email" else local.replace(".", "")
        flags: tuple[str, ...] = ()
        if i < pilot:
            flags = ("pilot",)
        elif i < pilot + vip:
            flags = ("vip",)
        boxes.append(generate_mailbox(
            seed=seed, email=email, login=login, password=f"pw-{rng.getrandbits(40):010x}",
            display_name=f"{first} {last}", layout=layout, messages=messages, sizes=sizes,
            user_flags=flags, edge_cases=edge_cases))
    return boxes


def user_list_csv(mailboxes: list[CorpusMailbox], *, with_passwords: bool = False,
                  password_env_prefix: str = "GOVLAB_PW_") -> str:
    """The CSV user list a ministry would hand over for these mailboxes."""
    lines = ["email,login,display_name,password,flags"]
    for box in mailboxes:
        ref = f"env:{password_env_prefix}{_env_key(box.login)}" if with_passwords else ""
        name = box.display_name.replace('"', "'")
        lines.append(f'{box.email},{box.login},"{name}",{ref},{" ".join(box.user_flags)}')
    return "\n".join(lines) + "\n"


def password_env(mailboxes: list[CorpusMailbox], prefix: str = "GOVLAB_PW_") -> dict[str, str]:
    return {f"{prefix}{_env_key(b.login)}": b.password for b in mailboxes}


def _env_key(login: str) -> str:
    return "".join(c.upper() if c.isalnum() else "_" for c in login)
