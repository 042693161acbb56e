"""The migration workspace: a directory holding the project file, the state store, plans and reports."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from migrate.core.errors import WorkspaceError
from migrate.core.store import STATE_FILE, Store, open_store

if TYPE_CHECKING:
    from migrate.core.config import Project

#: The project file of a workspace. (Here, not in migrate.core.config: knowing where it is must not cost the
#: import of the project file's models, which commands that only read the store do not need.)
PROJECT_FILE = "migration.yaml"

EXAMPLE_USERS = {
    "users/health.csv": (
        "email,login,display_name,password,flags\n"
        "# One row per mailbox. login: the user's login on the ministry server (default: the email).\n"
        "# flags: pilot (first wave), vip (white-glove wave), skip (do not migrate).\n"
        "maria.gonzalez@health.gov.bz,mgonzalez,María González,,pilot\n"
        "john.smith@health.gov.bz,jsmith,John Smith,,\n"
        "minister@health.gov.bz,minister,Hon. Minister of Health,,vip\n"
    ),
    "users/finance.csv": (
        "email,login,display_name,password,flags\n"
        "anne.young@finance.gov.bz,anne.young@finance.gov.bz,Anne Young,,pilot\n"
        "peter.chan@finance.gov.bz,peter.chan@finance.gov.bz,Peter Chan,,\n"
    ),
}


@dataclass(frozen=True)
class Workspace:
    root: Path

    @property
    def project_file(self) -> Path:
        return self.root / PROJECT_FILE

    @property
    def state_file(self) -> Path:
        return self.root / STATE_FILE

    @property
    def plans_dir(self) -> Path:
        return self.root / "plans"

    @property
    def reports_dir(self) -> Path:
        return self.root / "reports"

    @property
    def locks_dir(self) -> Path:
        return self.root / ".locks"

    def load_project(self) -> Project:
        from migrate.core.config import load_project

        return load_project(self.project_file)

    def open_store(self, project: Project | None = None) -> Store:
        """The workspace's state store: ``state.db``, or the shared PostgreSQL database the project's ``state:``
        names (its password resolved from its secret reference only now, and never kept)."""
        state = project.config.state if project is not None else None
        if state is None:
            return open_store(self.state_file)
        from migrate.core.secrets import SecretRef, resolve
        from migrate.core.store import open_postgres

        password = None
        if state.password:
            password = resolve(SecretRef(state.password), base_dir=project.base_dir, label="state.password").reveal()
        ca_file = str(project.resolve_path(state.ca_file)) if state.ca_file else None
        return open_postgres(state.dsn(), password=password, ca_file=ca_file, verify=state.verify_certificate,
                             reconnect_s=state.reconnect_seconds, statement_s=state.timeout_seconds)

    def names_shared_state(self) -> bool:
        """Whether the project file has a top-level ``state:`` (read without validating the file)."""
        try:
            text = self.project_file.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return False
        return re.search(r"^state\s*:", text, re.MULTILINE) is not None


def example_project_text() -> str:
    return resources.files("migrate.core").joinpath("example_migration.yaml").read_text(encoding="utf-8")


def init_workspace(root: Path) -> Workspace:
    """Create a workspace with a commented example project; refuses to touch an existing one."""
    root = root.expanduser()
    ws = Workspace(root)
    for existing in (ws.project_file, ws.state_file):
        if existing.exists():
            raise WorkspaceError(f"{root} is already a govmigrate workspace ({existing.name} exists); "
                                 "nothing was changed")
    if root.exists() and not root.is_dir():
        raise WorkspaceError(f"{root} exists and is not a directory")
    root.mkdir(parents=True, exist_ok=True)
    for sub in (ws.plans_dir, ws.reports_dir, root / "users"):
        sub.mkdir(exist_ok=True)
    ws.project_file.write_text(example_project_text(), encoding="utf-8")
    for rel, text in EXAMPLE_USERS.items():
        target = root / rel
        if not target.exists():
            target.write_text(text, encoding="utf-8")
    _make_key(root / "secrets" / "phones.key")
    store = open_store(ws.state_file, create=True)
    try:
        store.add_event("workspace", "init", f"created {root}")
    finally:
        store.close()
    return ws


def _make_key(path: Path) -> None:
    """A random key for phones.secrets_key (32 bytes, base64), mode 0600 from creation, in a 0700 directory."""
    import base64
    import secrets

    path.parent.mkdir(mode=0o700, exist_ok=True)
    if path.exists():
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(base64.b64encode(secrets.token_bytes(32)).decode("ascii") + "\n")


def open_workspace(root: Path) -> Workspace:
    ws = Workspace(root.expanduser())
    if not ws.root.is_dir():
        raise WorkspaceError(f"workspace directory {ws.root} does not exist (create one with: govmigrate init DIR)")
    if not ws.project_file.exists():
        raise WorkspaceError(f"{ws.root} is not a govmigrate workspace: no {PROJECT_FILE} "
                             "(create one with: govmigrate init DIR, or pass --workspace)")
    return ws


def default_workspace_dir() -> Path:
    return Path(os.environ.get("GOVMIGRATE_WORKSPACE") or ".")
