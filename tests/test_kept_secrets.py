"""One set of passwords per phone (issue 24): what govmigrate makes is made once, kept sealed in the store with the
key the project file names, reused until --rotate-secrets; a set an export made stays pending until its files are
written, so an export killed in between writes the same passwords again; the store never holds a clear one."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml

from migrate.core.config import load_project
from migrate.core.errors import SecretError, UsageError
from migrate.core.sealed import Sealer, SealError
from migrate.core.secrets import Secret
from migrate.voip.kept import KeptSecrets
from migrate.voip.model import Extension
from tests.lab.scenario import PHONES_KEY, provisioned_phones

SIP = {"domain": "voice.gov.bz", "registrar": "127.0.0.1"}


def phones() -> list[Extension]:
    return [Extension("health", "health", "2001", "Ana", tech="pjsip", secret=Secret("pbx-pass-2001", remember=False),
                      voicemail_box="2001@default"),
            Extension("health", "health", "2002", "Ben", tech="sip"),
            Extension("health", "health", "2098", "Fax", tech="custom")]


@pytest.fixture
def keeper(tmp_path):
    """A workspace with the phones in the store (nothing kept yet) and phones.secrets_key set."""
    project_file, store = provisioned_phones(tmp_path, [], SIP)
    store.upsert_source("health", "Ministry of Health", "imap", ["health.gov.bz"])
    for ext in phones():
        store.upsert_extension(ext, seen_at="2026-11-30T00:00:00Z")
    yield KeptSecrets(load_project(project_file), store), store, project_file
    store.close()


def reveal(secrets: dict) -> dict[str, str]:
    return {k: v.reveal() for k, v in secrets.items()}


def test_sealed_values_open_only_with_their_key_and_for_their_row():
    sealer = Sealer(Secret(PHONES_KEY, remember=False))
    token = sealer.seal("Zq9-the-password", "health:2001:SIP password")
    assert "Zq9" not in token and sealer.open(token, "health:2001:SIP password") == "Zq9-the-password"
    with pytest.raises(SealError):
        sealer.open(token, "health:2002:SIP password")  # moved to another row
    with pytest.raises(SealError):
        Sealer(Secret(PHONES_KEY + "x", remember=False)).open(token, "health:2001:SIP password")
    assert Sealer(Secret(PHONES_KEY, remember=False)).key_id == sealer.key_id != Sealer(Secret("y" * 40)).key_id
    with pytest.raises(SecretError, match="at least 32"):
        Sealer(Secret("too-short-a-key", remember=False))


def test_new_passwords_are_made_once_and_rotation_makes_the_next_set(keeper):
    kept, store, _ = keeper
    exts = phones()
    plain = kept.for_export(exts, new=False, rotate=False, pins=True)
    assert (plain.secrets, plain.pending) == ({}, []), "without --new-secrets the PBX's passwords are used"
    first = kept.for_export(exts, new=True, rotate=False, pins=True)
    assert sorted(first.secrets) == ["health:2001", "health:2002"], "the fax gets no password"
    assert sorted(first.made) == sorted(first.secrets) and first.made_pins == ["health:2001"]
    store.keep_pending_secrets(first.pending)
    again = kept.for_export(exts, new=True, rotate=False, pins=True)
    assert reveal(again.secrets) == reveal(first.secrets) and again.made == [] and again.pending == [], \
        "a pending set (files not written yet, or a killed export) is written again, not made again"
    store.promote_secrets(sorted(first.secrets))
    current = kept.for_export(exts, new=False, rotate=False, pins=True)
    assert reveal(current.secrets) == reveal(first.secrets), "kept passwords are used without --new-secrets too"
    assert [kept.current(k, 0)[0].reveal() for k in sorted(first.secrets)] == \
        [first.secrets[k].reveal() for k in sorted(first.secrets)], "sip check reads the same ones"
    rotated = kept.for_export(exts, new=False, rotate=True, pins=True)
    assert set(reveal(rotated.secrets).values()).isdisjoint(reveal(first.secrets).values())
    assert sorted(rotated.changed) == sorted(first.secrets)
    assert {r.generation for r in rotated.pending} == {2}
    store.keep_pending_secrets(rotated.pending)  # the export is killed before its files are written ...
    assert kept.current("health:2001", 0)[0].reveal() == first.secrets["health:2001"].reveal(), \
        "... so the platform (and sip check) still has the current set"
    rerun = kept.for_export(exts, new=False, rotate=True, pins=True)
    assert reveal(rerun.secrets) == reveal(rotated.secrets), "running the rotation again writes the same set"
    blob = b"".join(str(row).encode() for rows in store.kept_secrets().values() for row in rows.values())
    for value in [*reveal(first.secrets).values(), *reveal(rotated.secrets).values()]:
        assert value.encode() not in blob


def test_a_pin_is_made_for_a_box_without_one_and_kept(keeper):
    kept, store, _ = keeper
    exts = phones()
    made = kept.for_export(exts, new=True, rotate=False, pins=True)
    assert made.made_pins == ["health:2001"] and len(made.pins["health:2001"].reveal()) == 6
    store.keep_pending_secrets(made.pending)
    store.promote_secrets(sorted(made.secrets))
    assert reveal(kept.for_export(exts, new=True, rotate=False, pins=True).pins) == reveal(made.pins)


def test_without_the_key_or_with_another_one_nothing_is_made_or_read(keeper, tmp_path):
    kept, store, project_file = keeper
    made = kept.for_export(phones(), new=True, rotate=False, pins=False)
    store.keep_pending_secrets(made.pending)
    store.promote_secrets(sorted(made.secrets))
    doc = yaml.safe_load(project_file.read_text())
    doc["phones"] = {}
    project_file.write_text(yaml.safe_dump(doc))
    keyless = KeptSecrets(load_project(project_file), store)
    with pytest.raises(UsageError, match=r"names no phones\.secrets_key") as caught:
        keyless.for_export(phones(), new=True, rotate=False, pins=False)
    assert "openssl rand -base64 32" in caught.value.hint
    secret, why = keyless.current("health:2001", 0)
    assert secret is None and "phones.secrets_key" in why, "sip check says why, never registers with a guess"
    other = tmp_path / "secrets" / "other.key"
    other.write_text("another-key-that-is-long-enough-0123456789\n")
    other.chmod(0o600)
    doc["phones"] = {"secrets_key": "file:secrets/other.key"}
    project_file.write_text(yaml.safe_dump(doc))
    with pytest.raises(UsageError, match="is not the key that sealed"):
        KeptSecrets(load_project(project_file), store).for_export(phones(), new=False, rotate=False, pins=False)


def test_a_password_an_earlier_version_wrote_to_a_file_is_kept_not_replaced(keeper, tmp_path):
    kept, store, _ = keeper
    legacy = tmp_path / "pilot-new-secrets.csv"
    with open(legacy, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["key", "extension", "secret"])
        writer.writerow(["health:2002", "2002", "legacy-password-2002"])
    row = store.extension("health:2002")
    with store.tx() as c:  # as an export of schema 6 left it
        c.execute("UPDATE extensions SET secret_file = ? WHERE id = ?", (str(legacy), row.id))
    assert kept.current("health:2002", row.id)[0].reveal() == "legacy-password-2002"
    chosen = kept.for_export(phones(), new=True, rotate=False, pins=False)
    assert chosen.secrets["health:2002"].reveal() == "legacy-password-2002" and chosen.imported == ["health:2002"]
    store.keep_pending_secrets(chosen.pending)
    store.promote_secrets(sorted(chosen.secrets))
    assert store.extension_secret_file(row.id) is None and Path(legacy).exists()
    assert kept.current("health:2002", row.id)[0].reveal() == "legacy-password-2002"


def test_init_makes_a_key_only_its_owner_can_read(tmp_path):
    import stat

    from migrate.core.secrets import SecretRef, resolve
    from migrate.core.workspace import init_workspace

    init_workspace(tmp_path / "ws")
    key = tmp_path / "ws" / "secrets" / "phones.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    assert "secrets_key: file:secrets/phones.key" in (tmp_path / "ws" / "migration.yaml").read_text()
    Sealer(resolve(SecretRef("file:secrets/phones.key"), base_dir=tmp_path / "ws"))  # long enough to seal with
