"""`govmigrate worker`: copy mailboxes that `run WAVE --workers` queued, on this host, with the others."""

from __future__ import annotations

import threading

import click

from migrate.cli.app import App, pass_app
from migrate.cli.output import emit_json, emit_table, human_bytes, output_options
from migrate.cli.progress import print_summary, progress_for
from migrate.core.errors import Finished, Interrupted


@click.command()
@click.option("--source", "sources", multiple=True, metavar="ID",
              help="Only claim mailboxes of this source (repeatable): a host at a ministry's site takes its own.")
@click.option("--max-mailboxes", "threads", type=int, default=None, metavar="N",
              help="Mailboxes this host copies at once (default: the central host's connection limit, at most 8). "
                   "The sources' and the central host's limits hold across all workers whatever this is.")
@click.option("--drain", is_flag=True,
              help="Exit once nothing is queued or being copied anywhere (for a batch job); by default a worker "
                   "waits for the next queued pass until stopped (Ctrl-C, SIGTERM).")
@output_options(csv=False)
@pass_app
def command(app: App, sources: tuple[str, ...], threads: int | None, drain: bool, fmt: str) -> Finished:
    """Copy queued mailboxes: claim them one at a time from the shared state store and sync them.

    Start it on any number of migration hosts with the same project file (its `state:` names the shared
    PostgreSQL database); `govmigrate run WAVE --workers` queues a pass. Each claim is a lease the
    worker renews by heartbeat: if this host dies, another worker finishes its mailboxes once the lease
    lapses (sync.lease_seconds), and nothing is copied twice. Each source's `connections` limit and the
    central host's hold across all workers. Ctrl-C or SIGTERM stops after the batches in flight; the
    unfinished mailboxes go back to the queue. Exits 1 if any mailbox it copied failed.
    """
    from migrate.waves.workers import Worker, check_threads

    project, store = app.project, app.store  # the users were registered by the run that queued the pass
    stop = threading.Event()
    with progress_for(app, f"worker {threads or ''}".strip()) as sink:
        worker = Worker(project, store, locks_dir=app.workspace.locks_dir, sources=sources,
                        threads=check_threads(threads, project), drain=drain, progress=sink, stop=stop)
        app.info(f"worker {worker.holder}: claiming mailboxes"
                 + (f" of {', '.join(sources)}" if sources else "") + f" from {store.where}")
        result = worker.run()
    rows = [{"mailbox": o.email, "state": f"{o.before} → {o.after}" if o.before != o.after else o.after,
             "result": "ok" if o.ok else ("given up: another worker took it over" if o.given_up
                                          else f"failed: {o.error}"),
             "copied": o.copied, "moved": human_bytes(o.copied_bytes), "seconds": f"{o.seconds:.1f}"}
            for o in result.outcomes]
    if fmt == "json":
        emit_json({"worker": worker.holder, "interrupted": result.interrupted,
                   "mailboxes": [o.as_dict() for o in result.outcomes],
                   "taken_over": [{"email": e, "from": w} for e, w in result.taken_over]})
    elif rows:
        emit_table(app, f"worker {worker.holder}", [("mailbox", "mailbox"), ("state", "state"), ("result", "result"),
                                                    ("copied", "copied>"), ("moved", "moved>"),
                                                    ("seconds", "seconds>")], rows)
    for email, lapsed in result.taken_over:
        app.info(f"{email}: taken over from {lapsed}, which stopped renewing its claim")
    for o in result.given_up:  # this host paused or lost the store meanwhile: worth a look, so exit 1
        app.warn(f"{o.email}: given up: this worker lost it to another ({o.error}); the other finished it")
    print_summary(app, f"worker {worker.holder}: {len(result.outcomes)} mailbox(es), {len(result.failed)} failed, "
                       + (f"{len(result.given_up)} given up, " if result.given_up else "")
                       + f"{sum(o.copied for o in result.outcomes)} messages copied")
    if result.error is not None:
        raise result.error
    if result.interrupted:
        raise Interrupted(f"worker {worker.holder}: stopped; unfinished mailboxes went back to the queue")
    return Finished(partial=bool(result.failed))
