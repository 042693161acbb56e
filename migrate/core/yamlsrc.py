"""Load YAML written by people while remembering the line of every key, for ``file:line: field`` errors.

Also refuses duplicate keys (PyYAML silently keeps the last one, which hides typos) and turns pydantic
validation errors into :class:`~migrate.core.errors.Problem` records pointing at the right line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from migrate.core.errors import Problem

Path_ = tuple[str | int, ...]


@dataclass
class Located:
    """Plain Python data from a YAML document plus the line of each path in it (1-based)."""

    data: Any
    lines: dict[Path_, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    def line_of(self, path: Path_) -> int | None:
        """Line of ``path``, or of its nearest ancestor that has one."""
        path = tuple(path)
        while True:
            if path in self.lines:
                return self.lines[path]
            if not path:
                return None
            path = path[:-1]


def _convert(node: yaml.Node, path: Path_, out: Located, filename: str, loader: yaml.SafeLoader) -> Any:
    out.lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                out.problems.append(Problem(filename, key_node.start_mark.line + 1, dotted(path),
                                            "YAML merge keys (<<) are not supported here"))
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                out.problems.append(Problem(filename, key_node.start_mark.line + 1, dotted(path),
                                            "keys must be plain words, not lists or mappings"))
                continue
            key = key_node.value
            if key in result:
                out.problems.append(Problem(filename, key_node.start_mark.line + 1, dotted((*path, key)),
                                            "duplicate key (an earlier line already sets it)"))
                continue
            out.lines[(*path, key)] = key_node.start_mark.line + 1
            result[key] = _convert(value_node, (*path, key), out, filename, loader)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, (*path, i), out, filename, loader) for i, item in enumerate(node.value)]
    # Scalars: let the safe constructor resolve the type (int, bool, null, str, ...).
    try:
        return loader.construct_object(node, deep=True)
    except yaml.constructor.ConstructorError as exc:
        out.problems.append(Problem(filename, node.start_mark.line + 1, dotted(path), str(exc.problem)))
        return None
    except ValueError as exc:  # e.g. a date that does not exist: 2027-02-31
        out.problems.append(Problem(filename, node.start_mark.line + 1, dotted(path), f"not a valid value: {exc}"))
        return None


_FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(text: str, filename: str) -> Located:
    """Parse ``text``; syntax errors become a single problem with the line the parser stopped at."""
    out = Located(None)
    try:
        try:
            # libyaml's parser where PyYAML has it (plan files of a thousand mailboxes parse in milliseconds, not a
            # tenth of a second); its nodes carry the same marks. A file it refuses is parsed again by the Python
            # parser, whose messages are the ones people get.
            node = yaml.compose(text, Loader=_FAST_LOADER)
        except yaml.YAMLError:
            if _FAST_LOADER is yaml.SafeLoader:
                raise
            node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        message = exc.problem or str(exc)
        if exc.context:
            message = f"{exc.context}, {message}"
        out.problems.append(Problem(filename, line, "", f"YAML syntax error: {message}"))
        return out
    except yaml.YAMLError as exc:
        out.problems.append(Problem(filename, None, "", f"YAML error: {exc}"))
        return out
    if node is None:
        out.data = {}
        return out
    loader = yaml.SafeLoader("")
    try:
        out.data = _convert(node, (), out, filename, loader)
    finally:
        loader.dispose()
    return out


def load_yaml_file(path: Path) -> Located:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Located(None, problems=[Problem(str(path), None, "", "file not found")])
    except UnicodeDecodeError as exc:
        return Located(None, problems=[Problem(str(path), None, "", f"not UTF-8 text ({exc.reason})")])
    except OSError as exc:
        return Located(None, problems=[Problem(str(path), None, "", f"cannot read: {exc.strerror}")])
    return load_yaml(text, str(path))


def dotted(path: Path_) -> str:
    """``("sources", 0, "server", "port")`` → ``sources[0].server.port``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + str(part)
    return text


def pydantic_problems(exc: Any, located: Located, filename: str, prefix: Path_ = ()) -> list[Problem]:
    """Turn a pydantic ``ValidationError`` into problems located by line."""
    problems = []
    for err in exc.errors(include_url=False):
        path = (*prefix, *_real_path(err["loc"], located.data))
        kind = err["type"]
        message = err["msg"]
        if kind == "extra_forbidden":
            message = "unknown key (check the spelling; unknown keys are not ignored)"
        elif kind == "missing":
            message = "required field is missing"
        elif message.startswith("Value error, "):
            message = message[len("Value error, "):]
        elif message.startswith("Assertion failed, "):
            message = message[len("Assertion failed, "):]
        problems.append(Problem(filename, located.line_of(path), dotted(path), message))
    return problems


def _real_path(loc: tuple, data: Any) -> tuple:
    """Drop the parts pydantic adds to a location that are not keys in the document: a discriminated
    union's tag (``server.imap.port`` is really ``server.port`` when ``server.type`` is ``imap``) and
    validator names."""
    path: list[str | int] = []
    node = data
    for part in loc:
        if (isinstance(part, str) and isinstance(node, dict) and part not in node
                and (part in node.values() or part.startswith("function-"))):
            continue
        path.append(part)
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            node = None
    return tuple(path)
