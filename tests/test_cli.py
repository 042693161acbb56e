"""The command tree: every command has help, the global options work, and errors map to exit codes."""

from __future__ import annotations

import subprocess
import sys

import click

from migrate import __version__
from migrate.cli.main import COMMAND_MODULES, cli
from migrate.core.errors import ExitCode


def _walk(command: click.Command, path: tuple[str, ...] = ()):
    yield path, command
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from _walk(sub, (*path, name))


def test_every_command_has_help_text(govmigrate):
    seen = []
    for path, command in _walk(cli):
        assert command.help and command.help.strip(), f"'govmigrate {' '.join(path)}' has no help text"
        result = govmigrate(*path, "--help")
        assert "Usage:" in result.stdout
        seen.append(" ".join(path))
    for name in COMMAND_MODULES:
        assert name in seen


def test_commands_are_listed_in_workflow_order(govmigrate):
    text = govmigrate("--help").stdout
    positions = [text.index(f"  {name} ") for name in COMMAND_MODULES]
    assert positions == sorted(positions)


def test_version(govmigrate):
    assert __version__ in govmigrate("--version").stdout


def test_python_dash_m_runs_the_cli():
    result = subprocess.run([sys.executable, "-m", "migrate", "--version"], capture_output=True, text=True)
    assert result.returncode == 0
    assert __version__ in result.stdout


def test_unknown_option_is_a_usage_error(govmigrate):
    result = govmigrate("--no-such-option", expect=2)
    assert "No such option" in result.stderr


def test_command_outside_a_workspace_says_so(govmigrate, tmp_path):
    result = govmigrate("-w", tmp_path / "nowhere", "log", expect=int(ExitCode.WORKSPACE))
    assert "does not exist" in result.stderr
    assert "Traceback" not in result.stderr


def test_workspace_from_environment(govmigrate, example_workspace):
    result = govmigrate("log", env={"GOVMIGRATE_WORKSPACE": str(example_workspace)})
    assert "init" in result.stdout


def test_the_command_line_loads_only_what_the_command_needs():
    """exchangelib takes half a second to import, the DNS, SIP and HTML report code more: a nightly sync pays
    for none of them (only commands that talk to Exchange, DNS or SIP do)."""
    import subprocess
    import sys

    probe = ("import sys, migrate.cli.main as m; m.cli.get_command(None, 'sync'); "
             "import migrate.mailbox.verify; "
             "print(sorted(n for n in ('exchangelib', 'dns.resolver', 'migrate.voip', 'jinja2') if n in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
