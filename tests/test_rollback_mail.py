"""A rollback that loses no mail, against the lab's Dovecot and BIND9: after a cut-over, mail is delivered to the
central host (by Dovecot's delivery agent, as the mail system does) and filed by the user into a folder made
there, and the user changes flags there; the rollback (killed half-way once) copies all of it back to the
ministry server exactly once; running it again copies nothing; and cutting the wave over again duplicates
nothing on the central host."""

from __future__ import annotations

import json
import signal
from collections import Counter

import pytest

from tests.lab.inspect import read_mailbox
from tests.test_cutover import CENTRAL_MX, DOMAIN, MINISTRY_MX, Programme, _cli

pytestmark = pytest.mark.lab


@pytest.fixture
def programme(tmp_path, govmigrate):
    p = Programme(tmp_path, govmigrate)
    yield p
    p.close()


def message(subject: str) -> bytes:
    return (f"From: someone@example.org\r\nTo: user@{DOMAIN}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject.replace(' ', '.')}@example.org>\r\n\r\n{subject}, body\r\n").encode()


def subjects(view, folder: str) -> Counter:
    out: Counter = Counter()
    for seen in view[folder].messages if folder in view else []:
        head = seen.raw.split(b"\r\n\r\n", 1)[0]
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"subject:"):
                out[line[8:].strip().decode()] += 1
    return out


def raws(view, folder: str) -> Counter:
    return Counter(m.raw for m in view[folder].messages) if folder in view else Counter()


def test_a_rollback_copies_back_what_arrived_after_the_switch_once_and_a_new_cut_over_copies_nothing_twice(
        programme):
    p = programme
    box = p.boxes[0]
    ministry, central = p.lab.sources["health"].server, p.lab.central
    # Before the switch, the central team's welcome note reached the central mailbox (by other means), and the
    # last pass copied one more message: the note is not mail from after the switch, and stays where it is.
    central.deliver_local(box.email, message("welcome to the central host"))
    ministry.deliver_local(box.login, message("before the switch"))
    final_again(p)
    p.prepare_and_let_the_ttl_run_out()
    # The cut-over is stopped right after the switch; while caches still know the old MX, mail reaches both
    # servers before its last delta runs (which copies the old server's and moves past the central host's).
    switched = _cli(p.ws, "cutover", p.wave, env={"GOVMIGRATE_CRASH_AT": "cutover-switched"})
    assert switched.returncode == -signal.SIGKILL and p.dns_state() == "switched"
    central.deliver_local(box.email, message("during the switch"))
    ministry.deliver_local(box.login, message("to the old server during the switch"))
    p.g("cutover", p.wave)
    assert p.mx(p.dns.secondary) == CENTRAL_MX and set(p.states().values()) == {"done"}
    before = read_mailbox(ministry, box.login)

    # After the switch: the mail system delivers to the central host; the user files mail into a folder made
    # there, and marks a migrated message (flagged, unread) on the central host.
    central.deliver_local(box.email, message("after the switch one"))
    central.deliver_local(box.email, message("after the switch two"))
    conn = central.connect(box.email)
    conn.create('"Central notes"')
    conn.append('"Central notes"', "(\\Seen $Important)", None, message("filed in a new folder"))
    conn.select("INBOX")
    ids = Counter(_message_id(m.raw) for m in before["INBOX"].messages)
    target = next(m for m in before["INBOX"].messages
                  if _message_id(m.raw) and ids[_message_id(m.raw)] == 1 and "\\Flagged" not in m.flags)
    _typ, data = conn.uid("SEARCH", "HEADER", "Message-ID", f'"{_message_id(target.raw)}"')
    (uid,) = data[0].split()
    conn.uid("STORE", uid, "+FLAGS", "(\\Flagged)")
    conn.uid("STORE", uid, "-FLAGS", "(\\Seen)")
    conn.logout()

    # The rollback, killed right after its first append reached the ministry server (before it was recorded).
    killed = _cli(p.ws, "dns", "rollback", "--wave", p.wave, env={"GOVMIGRATE_CRASH_AT": "after-append:1"})
    assert killed.returncode == -signal.SIGKILL and p.dns_state() == "restored"
    for server in (p.dns.primary, p.dns.secondary):
        assert p.mx(server) == MINISTRY_MX
    rolled = json.loads(p.g("dns", "rollback", "--wave", p.wave, "--json").stdout)
    assert rolled["domains"][0]["after"] == "rolled-back"
    assert set(p.states().values()) == {"final-synced"}
    after = read_mailbox(ministry, box.login)
    assert subjects(after, "INBOX") - subjects(before, "INBOX") == Counter(
        {"during the switch": 1, "after the switch one": 1, "after the switch two": 1}), "each once, nothing else"
    assert "welcome to the central host" not in subjects(after, "INBOX")
    assert subjects(after, "Central notes") == Counter({"filed in a new folder": 1})
    assert after["Central notes"].messages[0].flags == {"\\Seen", "$Important"}
    flagged = next(m for m in after["INBOX"].messages if m.raw == target.raw)
    assert "\\Flagged" in flagged.flags and "\\Seen" not in flagged.flags, "the flags the user changed there"
    for name in before:
        if name != "INBOX":
            assert raws(after, name) == raws(before, name), name
    status = p.g("status", box.email).stdout
    assert "4 message(s)" in status and "are on the ministry server again" in status

    # Again: nothing more to copy back, by the rollback or by the copy-back step.
    p.g("dns", "rollback", "--wave", p.wave)
    again = json.loads(p.g("run", p.wave, "--step", "copy-back", "--json").stdout)
    assert again["exit_code"] == 0 and sum(o["copied"] for o in again["mailboxes"]) == 0
    assert _comparable(read_mailbox(ministry, box.login)) == _comparable(after)

    # Mail keeps arriving at the ministry server; the wave is cut over again later: nothing twice on the central
    # host, the copied-back mail and the folder made there included.
    ministry.deliver_local(box.login, message("after the rollback"))
    final_again(p)
    p.prepare_and_let_the_ttl_run_out()
    p.g("cutover", p.wave)
    assert set(p.states().values()) == {"done"}
    final_ministry, final_central = read_mailbox(ministry, box.login), read_mailbox(central, box.email)
    welcome = next(raw for raw in raws(final_central, "INBOX") if b"welcome to the central host" in raw)
    assert raws(final_central, "INBOX") - raws(final_ministry, "INBOX") == Counter({welcome: 1})
    assert raws(final_central, "Central notes") == raws(final_ministry, "Central notes")   # nothing twice
    for subject in ("during the switch", "after the switch one", "after the switch two", "after the rollback",
                    "before the switch", "to the old server during the switch"):
        assert subjects(final_central, "INBOX")[subject] == 1, subject
    assert subjects(final_central, "Central notes") == Counter({"filed in a new folder": 1})


def final_again(p: Programme) -> None:
    """The final pass once more, in every wave of the lab's plan (the domain's mailboxes may be in two)."""
    for wave in ("pilot", "wave-01"):
        if (p.ws / "plans" / f"{wave}.yaml").exists():
            p.g("run", wave, "--pass", "final", "--again")


def _message_id(raw: bytes) -> str | None:
    for line in raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"message-id:"):
            return line[11:].strip().decode()
    return None


def _comparable(view) -> dict:
    return {name: sorted((m.raw, tuple(sorted(m.flags))) for m in f.messages) for name, f in view.items()}
