"""Where a govmigrate command's time goes: ``python -m benchmarks.phases OUT.json -- ARGS...`` runs
``govmigrate ARGS...`` in this process with timers around the phases of a sync pass, and writes them to OUT.json.

The timers wrap functions from outside (nothing in ``migrate/`` knows about them, and a plain ``govmigrate`` run
pays nothing): each phase is the time spent inside its functions, summed over every thread, with the number of
calls. Threads run in parallel, so phases add up to more than the wall time; they say where the threads wait.
A wrapped function that calls another wrapped one counts in both (``session open`` holds ``tls connect`` and
``login``), so the ``of which`` phases are listed beside what holds them. IMAP commands are also counted by name
(round trips). A name that no longer exists in the engine is skipped, so the breakdown survives refactoring.

``BENCH_LAUNCHED`` (the launcher's ``time.time()``) gives the process start (the interpreter's); ``imports`` is the
command line's own (``migrate.cli.main``); what a command imports itself counts in ``command``. The timers
import nothing: a module with timed functions is patched when the command first imports it.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.abc
import json
import os
import resource
import sys
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

#: phase → the functions whose time it is (module:qualname). Order is the order printed.
PHASES: dict[str, list[str]] = {
    "session open": ["migrate.mailbox.imap:open_session"],
    "tls connect": ["migrate.mailbox.imap:connect"],
    "login": ["migrate.mailbox.imap:authenticate"],
    "namespace": ["migrate.mailbox.imap:_learn_namespace"],
    "list folders": ["migrate.mailbox.protocol:list_folders"],
    "folder status": ["migrate.mailbox.protocol:folder_status"],
    "select/examine": ["migrate.mailbox.source_imap:ImapSourceMailbox.examine",
                       "migrate.mailbox.central:Destination.select"],
    "read changes": ["migrate.mailbox.source_imap:ImapSourceMailbox.flags_changed_since",
                     "migrate.mailbox.source_imap:ImapSourceMailbox.metadata",
                     "migrate.mailbox.source_imap:ImapSourceMailbox.uids"],
    "fetch bodies": ["migrate.mailbox.source_imap:ImapSourceMailbox.bodies",
                     "migrate.mailbox.source_imap:ImapSourceMailbox.chunks"],
    "dest fingerprints": ["migrate.mailbox.central:Destination.fingerprints"],
    "appends": ["migrate.mailbox.protocol:multiappend", "migrate.mailbox.protocol:append_stream"],
    "flag stores": ["migrate.mailbox.protocol:store_flags"],
    "ensure folder": ["migrate.mailbox.central:Destination.ensure_folder"],
    "store transactions": ["migrate.core.store.base:StoreBase.tx"],
    "store statements": ["migrate.core.store.base:Sqlite.execute", "migrate.core.store.base:Sqlite.executemany",
                         "migrate.core.store.base:Postgres.execute", "migrate.core.store.base:Postgres.executemany"],
    "store commits": ["migrate.core.store.base:Engine.commit"],
    "mailbox lock": ["migrate.core.locks:Lock.__enter__"],
    "settings pass": ["migrate.mailbox.settings:settings_pass"],
    "sieve session": ["migrate.mailbox.sieve:ManageSieve.__init__"],
    "sieve listing": ["migrate.mailbox.sieve:ManageSieve.listing"],
    "acl reads": ["migrate.mailbox.acl:read_imap", "migrate.mailbox.acl:central_acl",
                  "migrate.mailbox.protocol:getacl_many"],
    "groupware pass": ["migrate.mailbox.groupware:GroupwarePass.run"],
    "pre-flight": ["migrate.waves.preflight:preflight"],
    "central access check": ["migrate.mailbox.central:CentralServer.check_access"],
}

_lock = threading.Lock()
_seconds: dict[str, float] = defaultdict(float)
_calls: Counter[str] = Counter()
_commands: Counter[str] = Counter()


def _add(phase: str, seconds: float) -> None:
    with _lock:
        _seconds[phase] += seconds
        _calls[phase] += 1


def _side(args: tuple, kwargs: dict) -> str:
    """central or source, from the Endpoint among a call's arguments."""
    for value in (*args, *kwargs.values()):
        label = getattr(value, "label", None)
        if isinstance(label, str) and hasattr(value, "host"):
            return "central" if label.startswith("central") else "source"
    return "?"


#: Phases split by the side of the connection (the Endpoint among the arguments).
BY_SIDE = {"session open", "tls connect", "login"}


def _timed(phase: str, fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            _add(f"{phase} ({_side(args, kwargs)})" if phase in BY_SIDE else phase, time.perf_counter() - started)
    return wrapper


def _timed_context(phase: str, fn):
    """A @contextmanager function: its time is from entering to leaving the ``with``."""
    @functools.wraps(fn)
    @contextlib.contextmanager
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            with fn(*args, **kwargs) as value:
                yield value
        finally:
            _add(phase, time.perf_counter() - started)
    return wrapper


_missing: list[str] = []
#: Raw writes of protocol.py counted as commands (a pipelined batch as one round trip).
RAW_COMMANDS = {"multiappend": "MULTIAPPEND", "append_stream": "APPEND", "getacl_many": "GETACL_MANY"}


def _patch(module) -> None:
    """Wraps the phase functions that ``module`` defines (and counts its raw commands); copies that modules
    imported before made with ``from module import name`` are replaced too."""
    for phase, targets in PHASES.items():
        for target in targets:
            module_name, _, qualname = target.partition(":")
            if module_name != module.__name__:
                continue
            owner: object = module
            *path, name = qualname.split(".")
            try:
                for part in path:
                    owner = getattr(owner, part)
                original = owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)
            except (AttributeError, KeyError):
                _missing.append(target)
                continue
            # contextlib.contextmanager's wrapper is a function named helper around the generator function.
            is_context = hasattr(original, "__wrapped__") and \
                getattr(getattr(original, "__code__", None), "co_name", "") == "helper"
            wrapped = _timed_context(phase, original) if is_context else _timed(phase, original)
            if module.__name__ == "migrate.mailbox.protocol" and name in RAW_COMMANDS:
                wrapped = _counting(wrapped, RAW_COMMANDS[name])
            _replace(owner, name, original, wrapped)
    if module.__name__ == "migrate.mailbox.protocol":
        for name, command in RAW_COMMANDS.items():
            fn = getattr(module, name, None)
            if fn is not None and not hasattr(fn, "_phases_counted"):
                _replace(module, name, fn, _counting(fn, command))


def _replace(owner: object, name: str, original, wrapped) -> None:
    setattr(owner, name, wrapped)
    if not isinstance(owner, type):
        for other in list(sys.modules.values()):
            if getattr(other, "__name__", "").startswith("migrate.") and getattr(other, name, None) is original:
                setattr(other, name, wrapped)


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Patches a target module right after it is first imported: the timers import nothing themselves, so the
    command loads what it would load without them."""

    def __init__(self, names: set[str]) -> None:
        self.names = names

    def find_spec(self, fullname, path, target=None):
        if fullname not in self.names:
            return None
        for finder in sys.meta_path:
            if finder is self:
                continue
            spec = getattr(finder, "find_spec", lambda *a: None)(fullname, path, target)
            if spec is not None and spec.loader is not None:
                execute = spec.loader.exec_module

                def exec_module(module, _execute=execute):
                    _execute(module)
                    _patch(module)
                spec.loader.exec_module = exec_module
                return spec
        return None


def _install() -> None:
    import imaplib

    names = {t.partition(":")[0] for targets in PHASES.values() for t in targets} | {"migrate.mailbox.protocol"}
    for name in sorted(names):
        if name in sys.modules:
            _patch(sys.modules[name])
    sys.meta_path.insert(0, _PatchOnImport({n for n in names if n not in sys.modules}))

    command = imaplib.IMAP4._command

    def counted(self, name, *args):
        with _lock:
            _commands[name] += 1
        return command(self, name, *args)

    imaplib.IMAP4._command = counted


def _counting(fn, command: str):
    @functools.wraps(fn)
    def counting(*args, **kwargs):
        with _lock:
            _commands[command] += 1
        return fn(*args, **kwargs)
    counting._phases_counted = True
    return counting


def main(argv: list[str]) -> int:
    out = Path(argv[0])
    args = argv[argv.index("--") + 1:] if "--" in argv else argv[1:]
    launched = float(os.environ.get("BENCH_LAUNCHED", "0") or 0)
    started = time.time()
    import_start = time.perf_counter()
    from migrate.cli import main as cli_main
    imports = time.perf_counter() - import_start
    _install()
    code = 0
    wall_start = time.perf_counter()
    try:
        cli_main.cli.main(args=args, prog_name="govmigrate")  # always ends in SystemExit
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    command_s = time.perf_counter() - wall_start
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result = {
        "process start (interpreter)": round(started - launched, 4) if launched else None,
        "imports": round(imports, 4),
        "command": round(command_s, 4),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
        "phases": {p: {"s": round(s, 4), "calls": _calls[p]} for p, s in _seconds.items()},
        "imap_commands": dict(_commands.most_common()),
        "not_found": sorted(set(_missing)),
    }
    out.write_text(json.dumps(result, indent=1))
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
