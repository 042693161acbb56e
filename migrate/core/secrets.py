"""Secret references (``env:NAME``, ``file:PATH``, ``prompt``) and the masked ``Secret`` value.

A project file never holds a password, only a reference to where it lives. Every resolved value is
registered with :func:`redact` so that the one redaction point in logging can blank it out wherever it
would otherwise appear.
"""

from __future__ import annotations

import os
import re
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

from migrate.core.errors import SecretError
from migrate.core.redaction import MASK, RedactingWriter, redact, register

__all__ = ["MASK", "MIN_LENGTH", "RedactingWriter", "Secret", "SecretRef", "SecretTooShort", "parse_ref", "redact",
           "register", "resolve"]

#: Shorter values are refused as passwords: they are guessable, and too short to mask in logs without
#: also masking ordinary words that happen to contain them.
MIN_LENGTH = 8
_REF_RE = re.compile(r"^(env:[A-Za-z_][A-Za-z0-9_]*|file:.+|prompt)$")


class SecretTooShort(SecretError):
    """A secret resolved, but its value is too short to be a password (an error even in ``check``)."""


class Secret:
    """A secret value whose ``repr``/``str`` never show it; call :meth:`reveal` at the point of use."""

    __slots__ = ("_value", "source")

    def __init__(self, value: str, source: str = "", *, remember: bool = True) -> None:
        """``remember=False`` for secrets that come by the thousand and never meet a message (PBX extension
        passwords and PINs, kept in memory for an export): they are masked in repr, not registered with
        the redaction point, whose pattern they would make slow."""
        self._value = value
        self.source = source
        if remember:
            register(value)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({MASK}{', ' + self.source if self.source else ''})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("secret", self._value))

    def __reduce__(self):  # picklable for worker processes, still masked in repr
        return (Secret, (self._value, self.source))


@dataclass(frozen=True)
class SecretRef:
    """Where a secret lives, as written in the project file or a user list."""

    text: str

    @property
    def kind(self) -> str:
        return self.text.split(":", 1)[0]

    @property
    def argument(self) -> str:
        return self.text.split(":", 1)[1] if ":" in self.text else ""

    def __str__(self) -> str:
        return self.text


def parse_ref(text: str) -> SecretRef:
    """Check the reference's form; raises ``ValueError`` with a message for the project-file checker."""
    text = text.strip()
    if not _REF_RE.match(text):
        raise ValueError(
            "must be a secret reference: 'env:VARIABLE', 'file:/path/to/file' (mode 0600) or 'prompt'; "
            "passwords are never written in the project file"
        )
    return SecretRef(text)


def resolve(ref: SecretRef, *, base_dir: Path | None = None, label: str = "password") -> Secret:
    """Fetch the value a reference points to, or raise :class:`SecretError` saying why not.

    A value shorter than :data:`MIN_LENGTH` raises :class:`SecretTooShort` and is never registered."""
    value = _fetch(ref, base_dir, label)
    if len(value) < MIN_LENGTH:
        raise SecretTooShort(
            f"{label}: the value of {ref.text} is shorter than {MIN_LENGTH} characters, too short to be a "
            f"password and to be masked in logs; use a longer one"
        )
    return Secret(value, ref.text)


def _fetch(ref: SecretRef, base_dir: Path | None, label: str) -> str:
    if ref.kind == "env":
        value = os.environ.get(ref.argument)
        if value is None or value == "":
            raise SecretError(f"{label}: environment variable {ref.argument} is not set")
        return value
    if ref.kind == "file":
        path = Path(ref.argument).expanduser()
        if base_dir is not None and not path.is_absolute():
            path = base_dir / path
        try:
            st = path.stat()
        except OSError as exc:
            raise SecretError(f"{label}: cannot read secret file {path}: {exc.strerror}")
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise SecretError(
                f"{label}: secret file {path} is readable by group or others "
                f"(mode {stat.S_IMODE(st.st_mode):04o}); run: chmod 600 {path}"
            )
        try:
            value = path.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise SecretError(f"{label}: cannot read secret file {path}: {exc.strerror}")
        if not value:
            raise SecretError(f"{label}: secret file {path} is empty")
        return value
    if ref.kind == "prompt":
        if not (sys.stdin.isatty() and sys.stderr.isatty()):
            raise SecretError(
                f"{label}: the project file says 'prompt', but there is no terminal to ask on; "
                "use env:VARIABLE or file:PATH for unattended runs"
            )
        import getpass

        value = getpass.getpass(f"{label}: ")
        if not value:
            raise SecretError(f"{label}: no value entered")
        return value
    raise SecretError(f"{label}: unknown secret reference kind {ref.kind!r}")
