"""One set of passwords per phone: the SIP passwords (and voicemail PINs) govmigrate makes are made once and kept,
sealed, in the state store; every later export and the SIP checks use the same ones.

Why the store, sealed, and not a file in the workspace: the store is the one truth every migration host shares
(a cut-over's SIP checks may run on another host than the export), it changes in transactions with the
extensions' states, and its backups hold only ciphertext. The key is named by the project file
(``phones.secrets_key``: ``file:PATH`` mode 0600, or ``env:NAME``), never stored; ``migrate.core.sealed`` seals
each value with AES-256-GCM bound to its extension.

A set goes through two states: ``pending`` (made by an export whose files are not written yet) and ``current``
(in the files of the last export that wrote them: what the platform has). An export keeps what it made as
pending before it writes its files and makes it current after, so a crash in between leaves the new set pending,
and the same command writes the same passwords again. The SIP checks use the current set only. ``rotate`` makes
the next set on purpose (a pending set left by an interrupted rotation is taken, not made again).

Exports made before secrets were kept wrote new ones only to a 0600 file (``extensions.secret_file``); the next
export keeps what that file holds instead of making new ones, and the SIP checks read it until then.
"""

from __future__ import annotations

import csv
import threading
from dataclasses import dataclass, field
from pathlib import Path

from migrate.core.config import Project
from migrate.core.errors import SecretError, UsageError
from migrate.core.sealed import Sealer, SealError
from migrate.core.secrets import Secret, SecretRef, resolve
from migrate.core.store import KeptSecretRow, Store, now
from migrate.voip.export import generate_pin, generate_secret
from migrate.voip.model import BY_HAND, PHONE, Extension, line_kind

PENDING = "pending"
CURRENT = "current"
KEY_HINT = ("name a key of at least 32 characters in migration.yaml, e.g. phones: secrets_key: "
            "file:secrets/phones.key, made with: openssl rand -base64 32 > secrets/phones.key; chmod 600 "
            "secrets/phones.key (every host sharing the state store needs the same key)")


@dataclass
class ExportSecrets:
    """What an export writes for the phones govmigrate keeps passwords for."""

    #: Extension key → the kept SIP password to write (the others come from the PBX files).
    secrets: dict[str, Secret] = field(default_factory=dict)
    #: Extension key → the kept voicemail PIN of a box the PBX gave none.
    pins: dict[str, Secret] = field(default_factory=dict)
    #: Sets to keep (pending) before the files are written.
    pending: list[KeptSecretRow] = field(default_factory=list)
    #: Keys given a password this export made.
    made: list[str] = field(default_factory=list)
    #: Keys whose password differs from the one the platform was last given (their phones need the new one).
    changed: list[str] = field(default_factory=list)
    #: Keys whose password came from the file an export wrote before secrets were kept.
    imported: list[str] = field(default_factory=list)
    #: Keys given a voicemail PIN this export made.
    made_pins: list[str] = field(default_factory=list)


class KeptSecrets:
    """The kept passwords of a project's phones, through the key the project file names (asked for only when a
    kept value is read or made)."""

    def __init__(self, project: Project, store: Store) -> None:
        self.project, self.store = project, store
        self._sealer: Sealer | None = None
        self._lock = threading.Lock()
        self._loaded: dict[str, dict[str, KeptSecretRow]] | None = None

    def sealer(self, why: str) -> Sealer:
        """The key; a usage error (exit 2) naming ``why`` it is needed when the project file names none, or the
        one it names cannot be read."""
        with self._lock:
            if self._sealer is None:
                ref = self.project.config.phones.secrets_key
                if not ref:
                    raise UsageError(f"{why}, but {self.project.path.name} names no phones.secrets_key to seal them "
                                     "with in the state store", hint=KEY_HINT)
                material = resolve(SecretRef(ref), base_dir=self.project.base_dir, label="phones.secrets_key")
                self._sealer = Sealer(material, label="phones.secrets_key")
            return self._sealer

    def _open(self, row: KeptSecretRow, value: str | None, what: str) -> Secret | None:
        if value is None:
            return None
        sealer = self.sealer(f"the state store keeps the {what} govmigrate made for {row.extension}")
        if row.key_id != sealer.key_id:
            raise UsageError(f"phones.secrets_key is not the key that sealed the kept {what} of {row.extension} (it "
                             f"was sealed with key {row.key_id}, this key is {sealer.key_id})",
                             hint="name the key they were made with; a lost key means new passwords: "
                                  "govmigrate voip export --rotate-secrets")
        try:
            return Secret(sealer.open(value, f"{row.extension}:{what}"), f"kept:{row.extension}", remember=False)
        except SealError as exc:
            raise UsageError(f"the kept {what} of {row.extension}: {exc.message}") from None

    def _seal(self, key: str, generation: int, sip: Secret | None, pin: Secret | None) -> KeptSecretRow:
        return sealed_row(self.sealer(f"this export makes new passwords for {key} and others"), key, generation,
                          sip, pin)

    # -- the export ----------------------------------------------------------------------------------

    def for_export(self, extensions: list[Extension], *, new: bool, rotate: bool, pins: bool) -> ExportSecrets:
        """The kept passwords (and, with ``pins``, PINs) an export of ``extensions`` writes: those kept already;
        with ``new`` one made for every SIP phone that has none yet (and a PIN for every box without one);
        with ``rotate`` a new one for every SIP phone. Nothing is stored here (see :attr:`ExportSecrets.pending`)."""
        chosen = ExportSecrets()
        kept = self.store.kept_secrets([e.key for e in extensions])
        for ext in extensions:
            kind = line_kind(ext.tech)
            if kind == BY_HAND:
                continue
            rows = kept.get(ext.key, {})
            pending, current = rows.get(PENDING), rows.get(CURRENT)
            base = pending or current
            sip = self._open(base, base.sip_secret, "SIP password") if base else None
            pin = self._open(base, base.pin, "voicemail PIN") if base else None
            generation = base.generation if base else 0
            made = False
            if kind == PHONE:
                interrupted = pending is not None and (current is None or pending.generation > current.generation)
                if rotate and not (interrupted and pending is not None and pending.sip_secret):
                    sip, generation, made = generate_secret(), (current.generation if current else 0) + 1, True
                elif sip is None:
                    legacy = self._legacy(ext.key)
                    if legacy is not None:
                        sip, generation = legacy, max(generation, 1)
                        chosen.imported.append(ext.key)
                    elif new:
                        sip, generation, made = generate_secret(), generation + 1, True
            new_pin = False
            if pins and ext.voicemail_box and ext.voicemail_pin is None and pin is None and (new or rotate):
                pin, new_pin = generate_pin(), True
                chosen.made_pins.append(ext.key)
            if sip is not None:
                chosen.secrets[ext.key] = sip
            if pin is not None:
                chosen.pins[ext.key] = pin
            if made:
                chosen.made.append(ext.key)
            if made or new_pin or ext.key in chosen.imported:
                chosen.pending.append(self._seal(ext.key, max(generation, 1), sip, pin))
            platform = self._open(current, current.sip_secret, "SIP password") if current else None
            if sip is not None and platform is not None and sip != platform:
                chosen.changed.append(ext.key)
        return chosen

    # -- the SIP checks ------------------------------------------------------------------------------

    def load(self, keys: list[str]) -> None:
        """Read the kept sets of ``keys`` in one query, for :meth:`current` to use (a wave of phones at once)."""
        self._loaded = self.store.kept_secrets(keys)

    def current(self, key: str, extension_id: int) -> tuple[Secret | None, str]:
        """The password the platform was given for ``key`` if govmigrate made it: the current kept one (or one an
        earlier version wrote to a file). (None, "") when govmigrate made none: the PBX's is the platform's.
        (None, why) when it cannot be read."""
        kept = self._loaded if self._loaded is not None and key in self._loaded else self.store.kept_secrets([key])
        row = kept.get(key, {}).get(CURRENT)
        if row is not None and row.sip_secret:
            try:
                return self._open(row, row.sip_secret, "SIP password"), ""
            except (UsageError, SecretError) as exc:
                return None, exc.message
        path = self.store.extension_secret_file(extension_id)
        if path:
            try:
                value = _lookup(_read_secrets_csv(Path(path)), key)
            except OSError as exc:
                return None, (f"its password was written to {path} by an earlier export, and that file cannot be "
                              f"read ({exc.strerror}); export the wave again with --rotate-secrets and load the "
                              "files on the platform")
            if not value:
                return None, f"{path} has no password for it any more; export the wave again"
            return Secret(value, f"{Path(path).name}:{key}", remember=False), ""
        return None, ""

    def _legacy(self, key: str) -> Secret | None:
        row = self.store.extension(key)
        path = self.store.extension_secret_file(row.id) if row is not None else None
        if not path:
            return None
        try:
            value = _lookup(_read_secrets_csv(Path(path)), key)
        except OSError:
            return None
        return Secret(value, f"{Path(path).name}:{key}", remember=False) if value else None


def sealed_row(sealer: Sealer, key: str, generation: int, sip: Secret | None, pin: Secret | None) -> KeptSecretRow:
    """A set to keep (pending), each value sealed for its extension and field."""
    return KeptSecretRow(key, PENDING, generation,
                         sealer.seal(sip.reveal(), f"{key}:SIP password") if sip else None,
                         sealer.seal(pin.reveal(), f"{key}:voicemail PIN") if pin else None,
                         sealer.key_id, now())


def _read_secrets_csv(path: Path) -> dict[str, str]:
    """key and number → secret, from the neutral CSV or FreePBX extensions.csv an earlier ``voip export
    --new-secrets`` wrote."""
    table: dict[str, str] = {}
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            secret = row.get("secret") or ""
            if not secret:
                continue
            if row.get("key"):
                table[row["key"]] = secret
            if row.get("extension"):
                table.setdefault(row["extension"], secret)
    return table


def _lookup(table: dict[str, str], key: str) -> str | None:
    return table.get(key) or table.get(key.rpartition(":")[2])
