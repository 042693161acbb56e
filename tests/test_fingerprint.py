"""The fingerprint that survives Exchange building a message's MIME again (unit level; the lab test is in
test_ews_realities)."""

from __future__ import annotations

from migrate.mailbox.fingerprint import HEADROOM, PREFIX, fingerprint, of_message, stable, stable_content


def fp(raw: bytes) -> str:
    return stable(len(raw), raw[:PREFIX])


BODY = b"".join(b"line %05d of a long body\r\n" % i for i in range(1000))
BASE = b"From: a@finance.gov.bz\r\nSubject: Budget\r\n folded\r\nMessage-ID: <1@x>\r\n"


def test_rebuilt_fields_do_not_change_the_stable_fingerprint():
    copied = BASE + b"Keywords: Red\r\n\r\n" + BODY
    now = b"Importance: high\r\n" + BASE + b"Keywords: Blue, =?utf-8?q?=C3=81rbol?=\r\n X-Priority: 1\r\n\r\n" + BODY
    assert of_message(copied) != of_message(now)
    assert fp(copied) == fp(now)
    assert stable_content(copied) == stable_content(now) == BASE + b"\r\n" + BODY


def test_anything_else_still_tells_messages_apart():
    assert fp(BASE + b"\r\n" + BODY) != fp(BASE.replace(b"Budget", b"Budgex") + b"\r\n" + BODY)
    assert fp(BASE + b"\r\n" + BODY) != fp(BASE + b"\r\n" + BODY + b"one more line\r\n"), "the size counts"
    assert fp(BASE + b"Keywords: a\r\n\r\n" + BODY) != fp(BASE + b"X-Keywords: a\r\n\r\n" + BODY)


def test_fields_longer_than_the_headroom_or_a_header_past_the_prefix_fall_back_to_the_plain_fingerprint():
    long_keywords = BASE + b"Keywords: " + b"x" * (HEADROOM + 10) + b"\r\n\r\n" + BODY
    assert fp(long_keywords) == of_message(long_keywords)
    no_end = b"Subject: " + b"y" * PREFIX + b"\r\n\r\nbody"
    assert fp(no_end) == fingerprint(len(no_end), no_end[:PREFIX])
