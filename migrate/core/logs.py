"""Logging set-up for the CLI: human lines or JSON lines on stderr, all through one redaction point.

The library only logs (``logging.getLogger(__name__)``); it never prints. ``RedactingFilter`` sits on
every handler govmigrate installs, so a secret that slipped into a message or an exception text is
masked before anything is written.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import warnings
from pathlib import Path
from typing import TextIO

from migrate.core.printable import printable
from migrate.core.secrets import redact


class RedactingFilter(logging.Filter):
    """Formats the record's message once, masks secrets in it, and freezes the result."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not lose the record
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            import traceback

            record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)))
            record.exc_info = None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for cron mail and log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("mailbox", "source", "folder", "wave", "event"):
            value = getattr(record, key, None)
            if value is not None:
                doc[key] = value
        if record.exc_text:
            doc["exception"] = record.exc_text
        return redact(json.dumps(doc, ensure_ascii=False))


class PlainFormatter(logging.Formatter):
    """One line per record: the message's control characters escaped (a name with a line break cannot forge a
    log line, an ESC cannot paint the terminal); a traceback keeps its lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = printable(record.message)
        return super().formatMessage(record)

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def setup_logging(*, verbose: int = 0, quiet: bool = False, log_json: bool = False,
                  stream: TextIO | None = None) -> logging.Handler:
    """Install govmigrate's single stderr handler; returns it so tests can remove it."""
    stream = stream or sys.stderr
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_govmigrate", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream)
    handler._govmigrate = True  # type: ignore[attr-defined]
    handler.addFilter(RedactingFilter())
    if log_json:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(PlainFormatter("%(levelname)s %(name)s: %(message)s"))
    if quiet:
        level = logging.ERROR
    elif verbose >= 2:
        level = logging.DEBUG
    elif verbose == 1:
        level = logging.INFO
    else:
        level = logging.WARNING
    # --log-json is for machines: they want the info-level record of what happened.
    if log_json and not quiet and verbose == 0:
        level = logging.INFO
    handler.setLevel(level)
    root.addHandler(handler)
    root.setLevel(min(level, logging.INFO))
    # Protocol libraries are chatty at DEBUG and would log literal message bodies; keep them quiet
    # unless asked twice. imapclient masks LOGIN itself; our filter masks the rest.
    # The SIP checks' message traces likewise (Authorization hashes masked by the client).
    for noisy in ("imapclient", "exchangelib", "urllib3", "requests_ntlm", "spnego", "migrate.voip.sip.trace"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose >= 3 else logging.WARNING)
    return handler


#: Where govmigrate's own code lives: a deprecation warning raised there is ours, and is shown.
_OURS = str(Path(__file__).resolve().parents[1])


def quiet_dependency_warnings() -> None:
    """Drop the deprecation warnings the libraries we depend on raise in their own code (dnspython's DSA support
    on a newer cryptography prints CryptographyDeprecationWarning at import): they are for those libraries'
    authors and would be noise on every command's stderr. Every other warning, and any warning govmigrate's
    own code raises, is shown as before."""
    shown = warnings.showwarning
    if getattr(shown, "quiet_dependencies", False):
        return

    def show(message, category, filename, lineno, file=None, line=None):
        if _deprecation(category) and not str(Path(filename).resolve()).startswith(_OURS):
            return
        shown(message, category, filename, lineno, file, line)

    show.quiet_dependencies = True  # type: ignore[attr-defined]
    warnings.showwarning = show


def _deprecation(category: type[Warning]) -> bool:
    return issubclass(category, (DeprecationWarning, PendingDeprecationWarning)) or any(
        "Deprecation" in cls.__name__ for cls in category.__mro__)
