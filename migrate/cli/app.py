"""The CLI's environment object (``ctx.obj``): options, output streams, and lazily opened workspace parts."""

from __future__ import annotations

import errno
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.text import Text

from migrate.core.errors import Problem
from migrate.core.printable import printable
from migrate.core.secrets import RedactingWriter

if TYPE_CHECKING:
    from migrate.core.config import Project
    from migrate.core.store import Store
    from migrate.core.workspace import Workspace


class _Console(Console):
    """Every string printed becomes text with its control characters escaped (``migrate.core.printable``): our
    own messages carry names from servers and files, and a name must not clear the screen or start a line.
    Rich renders data given as ``Text`` (``migrate.cli.output.plain``) without this method; ``plain`` escapes
    the same way."""

    def render_str(self, text: str, **kwargs: Any) -> Text:
        return super().render_str(printable(text), **kwargs)

    def on_broken_pipe(self) -> None:
        # rich would exit 1 ("items failed" in our table); the error boundary ends such a run as other tools do.
        self.quiet = True
        raise BrokenPipeError(errno.EPIPE, "the reader of this output went away")


def _console(stream) -> Console:
    """Rich output; when redirected to a file or pipe, wide enough that tables are not cut to 80 columns.

    Markup and emoji codes are off: what we print carries names from servers and user lists, and
    "[/old]" or ":memo:" in them is data. Our own styling goes in ``style=`` or ``Text``.
    """
    is_tty = hasattr(stream, "isatty") and stream.isatty()
    return _Console(file=RedactingWriter(stream), markup=False, emoji=False, highlight=False, soft_wrap=True,
                    width=None if is_tty else 200)


@dataclass
class App:
    workspace_dir: Path
    quiet: bool = False
    verbose: int = 0
    log_json: bool = False
    traceback: bool = False
    out: Console = field(default_factory=lambda: _console(sys.stdout))
    err: Console = field(default_factory=lambda: _console(sys.stderr))
    #: Warnings given so far (see :meth:`warn`).
    warnings: int = 0
    _workspace: Workspace | None = None
    _project: Project | None = None
    _store: Store | None = None

    @property
    def workspace(self) -> Workspace:
        if self._workspace is None:
            # Imported here: the project file's models and the store are for commands that open the workspace,
            # not for --help or --version (each command should start in well under a third of a second).
            from migrate.core.workspace import open_workspace

            self._workspace = open_workspace(self.workspace_dir)
        return self._workspace

    @property
    def project(self) -> Project:
        # Secret references that do not resolve are reported by `check` and, when a command needs them, as
        # that command's error; commands that contact no server (report, status, plan, log) stay quiet.
        if self._project is None:
            self._project = self.workspace.load_project()
        return self._project

    @property
    def store(self) -> Store:
        if self._store is None:
            # The project file says where the store is when several hosts share one; a command that needs
            # no project (status, log, report) still works on a broken project file that names no shared store.
            # A project file that names no shared store is not validated for it: the workspace's state.db is the
            # store, and a command that reads only the store (log, inventory show) starts without the project
            # file's models.
            project = None
            if self.workspace.names_shared_state():
                project = self.project
            self._store = self.workspace.open_store(project)
        return self._store

    @property
    def show_progress(self) -> bool:
        """Live progress only for a person at a terminal."""
        return self.err.is_terminal and not self.quiet and not self.log_json

    def info(self, message: str) -> None:
        """A human note on stderr (hidden by --quiet and --log-json; logs carry it then)."""
        if not self.quiet and not self.log_json:
            self.err.print(message, markup=False, highlight=False)

    def warn(self, message: str) -> None:
        """A warning for the person running the command. Any warning makes a command that otherwise
        succeeded exit 1 (decided once, in the error boundary: migrate.cli.main)."""
        self.warnings += 1
        if not self.log_json:
            self.err.print(f"warning: {message}", style="yellow", markup=False, highlight=False)
        else:
            import logging

            logging.getLogger("migrate").warning(message)

    def problem(self, problem: Problem) -> None:
        """A problem found in a file a person wrote, by its severity: ``error: FILE:LINE: FIELD: MESSAGE`` (a
        command that found one ends with exit 2, by its result), ``warning: ...`` (exit 1, as :meth:`warn`),
        ``note: ...`` (nothing wrong). With --log-json each is a log record at its level."""
        if problem.severity == "warning":
            self.warn(str(problem))
        elif problem.severity == "note":
            self.info(f"note: {problem}")
        elif self.log_json:
            import logging

            logging.getLogger("migrate").error(str(problem))
        else:
            self.err.print(f"error: {problem}", style="red", markup=False, highlight=False)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


pass_app = click.make_pass_decorator(App)
