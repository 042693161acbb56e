"""The ``govmigrate`` root command: global options, the command groups, and the one error boundary."""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path

import click

from migrate import __version__
from migrate.cli.app import App
from migrate.core.errors import ExitCode, MigrateError, ValidationFailed
from migrate.core.logs import quiet_dependency_warnings, setup_logging
from migrate.core.printable import printable
from migrate.core.secrets import redact

log = logging.getLogger(__name__)
# Before any command's module (and so any dependency) is imported.
quiet_dependency_warnings()

# Command modules, in the order `govmigrate --help` lists them.
COMMAND_MODULES = ["init", "check", "inventory", "plan", "run", "worker", "sync", "verify", "cutover", "dns", "voip",
                   "sip", "status", "report", "log"]


class GovmigrateGroup(click.Group):
    """Keeps commands in workflow order, imports a command's module only when that command runs (a nightly
    `sync` need not load the SIP, DNS and HTML report code), and is the single place errors turn into exit
    codes."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMAND_MODULES)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMAND_MODULES:
            import importlib

            self.add_command(importlib.import_module(f"migrate.cli.{cmd_name}_cmd").command, cmd_name)
        return self.commands.get(cmd_name)

    def invoke(self, ctx: click.Context):
        """Runs the command and ends with its exit code: a command returns its result, and a result that has an
        ``exit_code`` (a wave step's, a sync's, a check's) says how it ended; a command that finished with
        warnings exits 1 (as borg does), never 0; an error is its own exit code."""
        try:
            result = super().invoke(ctx)
        except BrokenPipeError:  # stdout's reader left (`| head`): stop quietly, as other tools do
            ctx.exit(_end_on_broken_pipe())
        except click.exceptions.Exit as exc:
            if exc.exit_code == 0 and _warned(ctx):
                raise click.exceptions.Exit(int(ExitCode.PARTIAL))
            raise
        except (click.exceptions.Abort, click.ClickException):
            raise
        except MigrateError as exc:
            _report_error(ctx, exc)
            ctx.exit(int(exc.exit_code))
        except KeyboardInterrupt:
            click.echo("\ninterrupted: state is consistent; run the same command again to resume", err=True)
            ctx.exit(int(ExitCode.INTERRUPTED))
        except Exception as exc:  # a bug: say so plainly, keep the traceback behind --traceback
            app = ctx.find_object(App)
            if app is not None and app.traceback:
                import traceback

                click.echo(redact(traceback.format_exc()), err=True)
            click.echo(f"internal error: {type(exc).__name__}: {shown(str(exc))}", err=True)
            if app is None or not app.traceback:
                click.echo("this is a bug in govmigrate; run again with --traceback and report the output",
                           err=True)
            ctx.exit(int(ExitCode.INTERNAL))
        code = ExitCode(int(getattr(result, "exit_code", ExitCode.OK)))
        if code == ExitCode.OK and _warned(ctx):
            code = ExitCode.PARTIAL
        if code != ExitCode.OK:
            ctx.exit(int(code))
        return result


def shown(text: str) -> str:
    """An error's text as the terminal gets it: secrets masked, control characters escaped."""
    return printable(redact(text))


def _warned(ctx: click.Context) -> bool:
    app = ctx.find_object(App)
    return app is not None and app.warnings > 0


def _report_error(ctx: click.Context, exc: MigrateError) -> None:
    app = ctx.find_object(App)
    if app is not None and app.traceback:
        import traceback

        click.echo(redact(traceback.format_exc()), err=True)
    if isinstance(exc, ValidationFailed):
        for problem in exc.problems:
            suffix = f"  ({problem.severity})" if problem.severity != "error" else ""
            click.echo(shown(str(problem)) + suffix, err=True)
    click.echo(f"error: {shown(exc.message)}", err=True)
    if exc.hint:
        click.echo(f"hint: {shown(exc.hint)}", err=True)
    if app is not None and app.log_json:
        log.error(exc.message)


#: What shells report for a tool killed by SIGPIPE; Python ignores that signal, so we exit with it ourselves.
BROKEN_PIPE_EXIT = int(ExitCode.BROKEN_PIPE)


def _end_on_broken_pipe() -> int:
    """Points stdout at /dev/null, so that what is still buffered goes nowhere instead of raising again at
    interpreter exit ("Exception ignored ... BrokenPipeError"); returns the exit status to end with."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout has no file descriptor (an in-process test runner)
        pass
    return BROKEN_PIPE_EXIT


def _sigterm_to_interrupt(signum, frame):  # SIGTERM stops as cleanly as Ctrl-C
    raise KeyboardInterrupt


@click.group(cls=GovmigrateGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-w", "--workspace", "workspace", type=click.Path(file_okay=False, path_type=Path),
              envvar="GOVMIGRATE_WORKSPACE", default=None, show_envvar=True,
              help="Migration workspace directory (default: the current directory).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors on stderr; no progress display.")
@click.option("-v", "--verbose", count=True, help="More log output on stderr (-vv for debug).")
@click.option("--log-json", is_flag=True, help="Log as JSON lines on stderr (for cron and log shippers).")
@click.option("--traceback", "show_traceback", is_flag=True, help="Show Python tracebacks for errors.")
@click.version_option(__version__, "--version", prog_name="govmigrate")
@click.pass_context
def cli(ctx: click.Context, workspace: Path | None, quiet: bool, verbose: int, log_json: bool,
        show_traceback: bool) -> None:
    """Consolidate ministry mail servers and PBX extensions onto central government infrastructure.

    A migration runs in waves: inventory the ministry servers, generate and approve a wave plan, run
    each wave (prestage, delta and final passes), cut over DNS, and report progress. Everything is
    recorded in the workspace's state store, and every step can be re-run to resume.
    """
    # GOVMIGRATE_WORKSPACE reaches `workspace` through the option's envvar; else the current directory (as
    # migrate.core.workspace.default_workspace_dir, not imported here: it brings the project file's models).
    app = App(workspace_dir=workspace or Path("."), quiet=quiet, verbose=verbose,
              log_json=log_json, traceback=show_traceback)
    ctx.obj = app
    ctx.call_on_close(app.close)
    setup_logging(verbose=verbose, quiet=quiet, log_json=log_json)
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        try:
            signal.signal(signal.SIGTERM, _sigterm_to_interrupt)
        except ValueError:  # not the main thread (e.g. under a test runner thread)
            pass


def main() -> None:
    """Console-script entry point."""
    try:
        cli.main(prog_name="govmigrate")  # always ends in SystemExit
    except SystemExit as end:
        try:
            sys.stdout.flush()  # the last buffered output: a reader that left shows up here, not at exit
        except BrokenPipeError:
            sys.exit(_end_on_broken_pipe())
        raise end
