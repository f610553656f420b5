"""The ``nd73`` command line. Each command reads the ``ND73_*`` settings once, when it first
needs them (:func:`_settings`), and passes them down; ``nd73 check-config`` shows them."""
from __future__ import annotations

import gc
import logging
import os
import sys
from pathlib import Path

import click

from engine.errors import DefinitionInvalid, EngineError
from engine.logs import configure_logging

log = logging.getLogger("nd73.cli")


def _settings():
    """This invocation's settings: ``obj`` when the caller passed some (``main(obj=...)``),
    else read from the environment once; a wrong variable ends the command, named."""
    from engine.config import Settings, SettingsError
    root = click.get_current_context().find_root()
    if not isinstance(root.obj, Settings):
        try:
            root.obj = Settings.from_environment()
        except SettingsError as exc:
            for problem in exc.problems:
                click.echo(f"error: {problem}", err=True)
            click.echo("(see nd73 check-config)", err=True)
            sys.exit(1)
    return root.obj


def _engine():
    from engine.workflow_engine import WorkflowEngine
    return WorkflowEngine(settings=_settings())


def _fail(exc: EngineError) -> None:
    click.echo(f"error: {exc.message}" if not isinstance(exc, DefinitionInvalid)
               else "error: the definition was refused:", err=True)
    for problem in getattr(exc, "problems", []):
        click.echo(f"  {problem}", err=True)
    sys.exit(1)


def _database_failed(exc: Exception) -> None:
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
    click.echo(f"error: the database failed: {reason} (is ND73_DATABASE_URL right and the "
               f"schema migrated with 'nd73 db upgrade'?)", err=True)
    sys.exit(1)


@click.group(help="ND73 Workflow: BPM engine for the procedures of Decree 73/2023/NĐ-CP.")
def main() -> None:
    pass


@main.group(help="Database schema.")
def db() -> None:
    pass


@db.command("upgrade", help="Create or migrate the database schema to the newest version.")
def db_upgrade() -> None:
    engine = _engine()
    engine.upgrade_database()
    click.echo(f"database is up to date ({engine.db.engine.url.render_as_string()})")


def _warn_unconfirmed(folder: Path) -> None:
    """Name every setting of the variant that no source gives (processes/README.md)."""
    from engine.variants import load_variant, unconfirmed_settings
    for warning in unconfirmed_settings(load_variant(folder).settings):
        click.echo(f"warning: {warning}", err=True)


def _dry_run(folder: Path) -> bool:
    """Play the variant's dry-run scripts (``<folder>/dryrun/*.toml``) on a throw-away
    database; say each one's outcome, and each failure with its script, step and element."""
    from engine.dryrun import load_folder, load_scripts, run_script
    passed = True
    for script in load_scripts(folder):
        result = run_script(script, load_folder(folder))
        if result.passed:
            click.echo(f"{result.file}: dry-run passed (ended at {result.end or result.stage})")
            continue
        passed = False
        for line in result.problems():
            click.echo(f"error: dry-run {line}", err=True)
    return passed


@main.command(help="Validate and deploy variant folders (e.g. processes/national); each "
                   "folder's dry-run scripts must pass first (nothing is deployed otherwise).")
@click.argument("folders", nargs=-1, required=True,
                type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--by", "deployed_by", default=lambda: os.environ.get("USER", "cli"),
              show_default="$USER", help="Who deploys (recorded on each version).")
def deploy(folders: tuple[Path, ...], deployed_by: str) -> None:
    engine = _engine()
    try:
        for folder in folders:
            _warn_unconfirmed(folder)
        # a dry-run that fails refuses the whole deployment: the change breaks a path the
        # variant's designers wrote down, and cases must not follow it unnoticed
        if not all([_dry_run(folder) for folder in folders]):
            click.echo("error: nothing was deployed: a dry-run script failed (fix the "
                       "procedure, or the script when the change is meant)", err=True)
            sys.exit(1)
        for folder in folders:
            for result in engine.repository.deploy_folder(folder, deployed_by):
                state = "deployed" if result.created else "unchanged"
                click.echo(f"{result.variant}/{result.key}: version {result.version} {state}")
    except EngineError as exc:
        _fail(exc)


@main.command(help="Validate variant folders without deploying them, and play their "
                   "dry-run scripts (dryrun/*.toml) on a throw-away database.")
@click.argument("folders", nargs=-1, required=True,
                type=click.Path(exists=True, file_okay=False, path_type=Path))
def validate(folders: tuple[Path, ...]) -> None:
    from engine.repository import validate_folder
    try:
        for folder in folders:
            _warn_unconfirmed(folder)
            variant, processes = validate_folder(folder)
            for process in processes:
                click.echo(f"{variant}/{process.key}: valid")
        failed = [folder for folder in folders if not _dry_run(folder)]
    except EngineError as exc:
        _fail(exc)
    if failed:
        sys.exit(1)


@main.command(help="Seed the demo organisations of processes/*/org.toml (passwords from "
                   "$ND73_DEMO_PASSWORD, default nd73-demo) and, into an empty database, "
                   "a few demo proposals.")
@click.option("--processes", "processes_dir", default="processes", show_default=True,
              type=click.Path(exists=True, file_okay=False, path_type=Path))
def demo(processes_dir: Path) -> None:
    from engine.demo import seed
    try:
        for line in seed(_engine(), processes_dir):
            click.echo(line)
    except EngineError as exc:
        _fail(exc)


@main.command(help="Write the consolidated report of a reporting cycle (xlsx or docx).")
@click.argument("instance_id")
@click.option("--format", "file_format", type=click.Choice(["xlsx", "docx"]), default="xlsx",
              show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="File to write (default: bao-cao-<year>.<format>).")
def report(instance_id: str, file_format: str, output: Path | None) -> None:
    from engine import reports
    try:
        content = reports.report_content(_engine(), instance_id)
    except EngineError as exc:
        _fail(exc)
    render = reports.xlsx if file_format == "xlsx" else reports.docx
    output = output or Path(f"bao-cao-{content.year}.{file_format}")
    output.write_bytes(render(content))
    click.echo(f"wrote {output}")


@main.command(help="Fire due timers and scheduled processes, and send e-mail from the outbox "
                   "(any number may run against PostgreSQL; one is enough on SQLite).")
@click.option("--interval", type=float, default=None,
              show_default="$ND73_SCHEDULER_INTERVAL or 1", help="Seconds between rounds.")
@click.option("--once", is_flag=True, help="Fire what is due now, then exit (for cron).")
def scheduler(interval: float | None, once: bool) -> None:
    from engine.scheduler import Scheduler, run_loop
    engine = _engine()          # e-mail settings from the engine's (ND73_SMTP_*)
    configure_logging()
    if once:
        scheduler = Scheduler(engine)
        click.echo(f"fired {scheduler.run_due()} timer(s)")
        click.echo(f"sent {scheduler.send_mail()} e-mail(s)")
        return
    if interval is None:
        interval = engine.settings.scheduler_interval
    log.info("scheduler running every %g s", interval)
    _keep_what_started()
    run_loop(engine, interval=interval, blocking=True)


def _keep_what_started() -> None:
    """What a long-running process made at its start (the app, the engine's caches and
    settings, the libraries' modules) lives as long as the process: it is frozen out of
    the garbage collector's full passes (gc.freeze), which otherwise walk all of it again
    and again (a web worker holds some 225,000 such objects: a full pass took about 0.1 s
    of CPU every few hundred requests). Garbage is collected first, so none is kept."""
    gc.collect()
    gc.freeze()


@main.group(help="The audit log.")
def audit() -> None:
    pass


@audit.command("verify", help="Recompute the audit log's hash chains and compare them with "
                              "their heads; name the first broken link (exit status 1).")
@click.option("--instance", "instance_id", help="Verify only this instance's chain.")
def audit_verify(instance_id: str | None) -> None:
    from sqlalchemy.exc import SQLAlchemyError

    from engine.audit import verify
    try:
        result = verify(_engine().db, instance_id)
    except EngineError as exc:
        _fail(exc)
    except SQLAlchemyError as exc:
        _database_failed(exc)
    if result.ok:
        click.echo(f"OK: {result.chains} chain(s), {result.events} entries verified")
        return
    click.echo(f"BROKEN: {result.broken[0]}", err=True)
    for link in result.broken[1:20]:
        click.echo(f"also broken: {link}", err=True)
    click.echo(f"{len(result.broken)} of {result.chains} chain(s) broken "
               f"({result.events} entries read)", err=True)
    sys.exit(1)


@main.command("export", help="Write a backup of the database (definitions, instances, audit "
                             "log, organisation…) as one JSON document.")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def export_command(file: Path) -> None:
    from sqlalchemy.exc import SQLAlchemyError

    from engine.backup import export_file
    try:
        counts = export_file(_engine().db, file)
    except OSError as exc:
        click.echo(f"error: cannot write {file}: {exc.strerror}", err=True)
        sys.exit(1)
    except SQLAlchemyError as exc:
        file.unlink(missing_ok=True)          # never leave half a backup behind
        _database_failed(exc)
    click.echo(f"wrote {file}: {sum(counts.values())} rows of {len(counts)} tables")


@main.command("import", help="Restore a backup written by 'nd73 export' into an empty, "
                             "migrated database (all or nothing), then verify its audit log.")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def import_command(file: Path) -> None:
    from sqlalchemy.exc import SQLAlchemyError

    from engine.backup import import_file
    try:
        counts = import_file(_engine().db, file)
    except EngineError as exc:
        _fail(exc)
    except SQLAlchemyError as exc:
        _database_failed(exc)
    click.echo(f"imported {sum(counts.values())} rows of {len(counts)} tables from {file}; "
               f"audit log verified")


@main.command("check-config", help="Show the effective ND73_* settings of this environment "
                                   "(secrets masked), or name each wrong variable (exit "
                                   "status 1).")
def check_config() -> None:
    from engine.config import Settings, SettingsError, check, unknown_variables
    for note in unknown_variables(os.environ):
        click.echo(f"warning: {note}", err=True)
    try:
        settings = Settings.from_environment()
    except SettingsError as exc:
        for problem in exc.problems:
            click.echo(f"error: {problem}", err=True)
        sys.exit(1)
    rows = settings.effective()
    width = max(len(name) for name, _, _ in rows)
    for name, shown, is_set in rows:
        click.echo(f"{name:<{width}}  {shown}{'' if is_set else '  (default)'}")
    problems, notes = check(settings)
    for note in notes:
        click.echo(f"ok: {note}")
    for problem in problems:
        click.echo(f"error: {problem}", err=True)
    if problems:
        sys.exit(1)
    click.echo("configuration is valid")


@main.command(help="Serve the web application and API (gunicorn).")
@click.option("--host", show_default="$ND73_HOST or 127.0.0.1")
@click.option("--port", type=click.IntRange(1, 65535), show_default="$ND73_PORT or 8000")
@click.option("--workers", type=click.IntRange(1, 64), show_default="$ND73_WORKERS or 1")
@click.option("--threads", type=click.IntRange(1, 256), show_default="$ND73_THREADS or 4")
def serve(host: str | None, port: int | None, workers: int | None,
          threads: int | None) -> None:
    from gunicorn.app.base import BaseApplication
    from gunicorn.glogging import Logger

    from api.app import create_app
    from engine.logs import use_json

    class JsonLogger(Logger):
        """gunicorn's own lines (listening, workers booting or dying) as JSON lines too."""

        def setup(self, cfg):
            super().setup(cfg)
            for handler in self.error_log.handlers:
                use_json(handler)

    settings = _settings()          # read here, once: every worker gets this object
    host = host or settings.host
    port = port or settings.port
    workers = workers or settings.workers
    threads = threads or settings.threads

    class Server(BaseApplication):
        def load_config(self):
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", workers)
            self.cfg.set("threads", threads)
            # no access log: the application logs each request, with its id, user and instance
            self.cfg.set("logger_class", JsonLogger)

        def load(self):
            app = create_app(settings=settings)
            if settings.embedded_scheduler:
                from engine.scheduler import run_loop
                run_loop(app.extensions["nd73"], interval=settings.scheduler_interval,
                         blocking=False)
            _keep_what_started()            # in each worker: gunicorn loads the app there
            # gunicorn's "Booting worker" comes before the app is loaded: this line says
            # that the worker takes requests (a client connecting earlier is served by the
            # workers already loaded, and keeps its connection there)
            log.info("worker %d ready", os.getpid())
            return app

    configure_logging()
    log.info("serving on http://%s:%s", host, port)
    Server().run()


if __name__ == "__main__":
    main()
