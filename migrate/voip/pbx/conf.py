"""Asterisk's configuration file syntax, as Asterisk reads it: ``[sections]``, ``key = value`` and
``key => value`` lines, ``;`` comments (``\\;`` is a semicolon, ``;-- --;`` a block comment), templates
``[name](!)`` and inheritance ``[name](tpl1,tpl2)`` (copied when the section is opened, as Asterisk does),
``[name](+)`` adding to a section, and ``#include``/``#tryinclude`` of other files, which FreePBX uses to split
pjsip.conf into pjsip.endpoint.conf, pjsip.auth.conf and pjsip.aor.conf. An included file's path is taken
relative to the including file (where FreePBX's files all are, /etc/asterisk); an absolute path that does not
exist here is looked for beside the including file.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from migrate.core.errors import Problem
from migrate.voip.pbx.records import LEFT_OUT, Findings, Place
from migrate.voip.pbx.textfile import read_text


@dataclass
class Option:
    key: str
    value: str
    at: Place


@dataclass
class Section:
    name: str
    at: Place
    template: bool = False
    inherits: list[str] = field(default_factory=list)
    #: Inherited options first (in the order of the templates), then the section's own.
    options: list[Option] = field(default_factory=list)
    #: Errors in the section (a line that cannot be read, a template that is not there): they hold the
    #: extension the section belongs to.
    errors: list[Problem] = field(default_factory=list)

    def get(self, key: str) -> Option | None:
        """The last value of an option (later lines override earlier and inherited ones)."""
        for option in reversed(self.options):
            if option.key.lower() == key:
                return option
        return None

    def value(self, key: str) -> str:
        option = self.get(key)
        return option.value if option else ""


@dataclass
class ConfFile:
    """A configuration file with everything it includes: its sections in reading order."""

    sections: list[Section] = field(default_factory=list)
    #: Resolved paths read (the file and every file it includes).
    paths: list[str] = field(default_factory=list)


#: Where the lines after a broken section header go (the error is said once, at the header).
_BROKEN = Section("(broken)", Place("", None))
_HEADER_RE = re.compile(r"^\[([^\]]*)\](.*)$")
#: The name a header that does not close still gives ("[2002" → 2002), to hold that extension.
_BROKEN_NAME_RE = re.compile(r"^\[\s*([^\]\(\s]*)")
_DIRECTIVE_RE = re.compile(r"^#\s*(\w+)\s*(.*)$")


def shown_path(path: Path, base_dir: Path) -> str:
    """How a file is named in problems: relative to the project file where it can be."""
    try:
        return os.path.relpath(path, base_dir) if path.is_absolute() else str(path)
    except ValueError:
        return str(path)


def parse_conf(path: Path, shown: str, encoding: str, findings: Findings, *, base_dir: Path,
               already_read: set[str]) -> ConfFile:
    """Read a configuration file and what it includes. ``already_read`` holds the resolved paths the source's
    earlier inputs read; an include of one of those is not read twice (a note says so)."""
    conf = ConfFile()
    _Parser(conf, findings, encoding, base_dir, already_read).read(path, shown, None, [])
    return conf


class _Parser:
    def __init__(self, conf: ConfFile, findings: Findings, encoding: str, base_dir: Path,
                 already_read: set[str]) -> None:
        self.conf = conf
        self.findings = findings
        self.encoding = encoding
        self.base_dir = base_dir
        self.already_read = already_read
        self.by_name: dict[str, list[Section]] = {}

    def read(self, path: Path, shown: str, current: Section | None, stack: list[str]) -> Section | None:
        """Read one file with ``current`` as the open section; returns the section open at its end (an
        included file continues, and may change, the section of the file that includes it)."""
        real = os.path.realpath(path)
        self.conf.paths.append(real)
        self.already_read.add(real)
        text = read_text(path, shown, self.encoding, self.findings)
        if text is None:
            return current
        in_block = False
        for number, raw in enumerate(text.split("\n"), start=1):
            at = Place(shown, number)
            line, in_block = _strip_comments(raw.rstrip("\r"), in_block)
            line = line.strip()
            if not line:
                continue
            if line.startswith("#"):
                current = self._directive(line, at, path, current, [*stack, real])
            elif line.startswith("["):
                current = self._header(line, at)
            else:
                self._option(line, at, current)
        if in_block:
            self.findings.error(Place(shown, None), "comment", "a block comment ';--' is never closed with '--;': "
                                                               "everything after it is read as a comment")
        return current

    def _directive(self, line: str, at: Place, path: Path, current: Section | None,
                   stack: list[str]) -> Section | None:
        match = _DIRECTIVE_RE.match(line)
        name = match.group(1).lower() if match else ""
        argument = match.group(2).strip().strip('"').strip("<>").strip() if match else ""
        if name not in ("include", "tryinclude"):
            if name == "exec":
                self.findings.warning(at, "#exec", "#exec runs a program when Asterisk loads the file; it is not "
                                                   "run here, and what it would add is not read")
            else:
                self.findings.warning(at, f"#{name}", "unknown directive; ignored (Asterisk ignores it too)")
            return current
        if not argument:
            self.findings.error(at, f"#{name}", "names no file")
            return current
        target = Path(argument)
        if not target.is_absolute():
            target = path.parent / target
        elif not target.exists():
            target = path.parent / target.name
        real = os.path.realpath(target)
        if real in stack:
            self.findings.error(at, f"#{name}", f"includes {argument}, which includes this file again")
            return current
        if real in self.already_read:
            self.findings.note(at, f"#{name}", f"{argument} is already read (another input or include); not read "
                                               "twice")
            return current
        if not target.is_file():
            if name == "include":
                self.findings.warning(at, "#include", f"{argument} is not here; its sections are not read (copy it "
                                                      "beside this file if it holds extensions)")
            return current
        return self.read(target, shown_path(target, self.base_dir), current, stack)

    def _header(self, line: str, at: Place) -> Section | None:
        match = _HEADER_RE.match(line)
        if not match:
            guess = _BROKEN_NAME_RE.match(line)
            self.findings.error(at, "[section]", f"the section header does not close with ']'; the section is "
                                                 f"{LEFT_OUT}", concerns=[guess.group(1) if guess else None])
            return _BROKEN
        name = match.group(1).strip()
        if not name:
            self.findings.error(at, "[section]", f"a section header without a name; the section is {LEFT_OUT}")
            return _BROKEN
        rest = match.group(2).strip()
        section = Section(name, at)
        append = False
        if rest.startswith("("):
            end = rest.find(")")
            if end < 0:
                self.findings.error(at, f"[{name}]", f"the section's options '(' do not close with ')'; the section "
                                                     f"is {LEFT_OUT}", concerns=[name])
                return _BROKEN
            for flag in (f.strip() for f in rest[1:end].split(",")):
                if flag == "!":
                    section.template = True
                elif flag == "+":
                    append = True
                elif flag:
                    templates = self.by_name.get(flag)
                    if not templates:
                        section.errors.append(self.findings.error(
                            at, f"[{name}]", f"inherits from [{flag}], which is not defined before it; read without "
                                             "it", concerns=[name]))
                        continue
                    section.inherits.append(flag)
                    section.options.extend(templates[-1].options)
        if append:
            existing = self.by_name.get(name)
            if not existing:
                self.findings.error(at, f"[{name}]", "(+) adds to a section, but none of this name comes before it; "
                                                     f"the section is {LEFT_OUT}", concerns=[name])
                return _BROKEN
            return existing[-1]
        self.by_name.setdefault(name, []).append(section)
        self.conf.sections.append(section)
        return section

    def _option(self, line: str, at: Place, current: Section | None) -> None:
        equals = line.find("=")
        # Never quote the line: it may be "secret=...".
        key = line[:equals].strip() if equals >= 0 else ""
        if current is None:
            self.findings.error(at, key or "(line)", f"a setting outside any [section]; {LEFT_OUT}")
            return
        if current is _BROKEN:
            return
        if equals < 0 or not key:
            what = "a line without '='" if equals < 0 else "a setting without a name before '='"
            current.errors.append(self.findings.error(at, f"[{current.name}]", f"{what} in a section; the line is "
                                                                               f"{LEFT_OUT}", concerns=[current.name]))
            return
        value = line[equals + 1:]
        if value.startswith(">"):
            value = value[1:]
        current.options.append(Option(key, value.strip(), at))


def _strip_comments(line: str, in_block: bool) -> tuple[str, bool]:
    """The line without comments; whether a block comment is still open after it."""
    out = []
    i = 0
    while i < len(line):
        if in_block:
            end = line.find("--;", i)
            if end < 0:
                return "".join(out), True
            i, in_block = end + 3, False
            continue
        ch = line[i]
        if ch == "\\" and i + 1 < len(line) and line[i + 1] == ";":
            out.append(";")
            i += 2
            continue
        if ch == ";":
            if line.startswith(";--", i):
                in_block = True
                i += 3
                continue
            break
        out.append(ch)
        i += 1
    return "".join(out), in_block
