"""The ``zeke`` command: set up the database, send and inspect jobs, run worker, beat and API.

Human output by default; ``--json`` on any command that prints data gives machine output instead.
Exit status: 0 ok, 1 not found / refused / invalid payload, 2 usage errors (bad JSON, bad id),
3 the database cannot be reached (or the connection failed).
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import click

ROOT = Path(__file__).resolve().parent.parent
#: What `zeke worker --dev` watches for changes.
WATCHED = ("zeke", "transport", "tasks")


# -- output ----------------------------------------------------------------------------------------


def _plain(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, dict | list):
        text = json.dumps(value, default=str, separators=(",", ":"))
        return text if len(text) <= 60 else text[:57] + "..."
    return str(value)


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    cells = [[_plain(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def emit(data: Any, as_json: bool, human: Callable[[Any], str] | None = None) -> None:
    if as_json:
        click.echo(json.dumps(data, default=str, indent=2))
    else:
        click.echo(human(data) if human else _plain(data))


def _fields(data: dict[str, Any]) -> str:
    width = max(len(k) for k in data)
    out = []
    for key, value in data.items():
        text = json.dumps(value, default=str) if isinstance(value, dict | list) else _plain(value)
        out.append(f"{key.ljust(width)}  {text}")
    return "\n".join(out)


def fail(message: str, code: int = 1) -> None:
    click.echo(f"zeke: {message}", err=True)
    sys.exit(code)


json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


# -- wiring ----------------------------------------------------------------------------------------


def _manager() -> Any:
    from zeke.app import get_manager

    return get_manager()


def _jobs() -> Any:
    from zeke import registry
    from zeke.jobs import Jobs

    return Jobs(registry.load())


def _job_id(value: str) -> str:
    from transport.names import parse_job_id

    try:
        return parse_job_id(value)
    except ValueError:
        fail(f"not a job id (UUID): {value!r}", 2)
        raise AssertionError from None  # unreachable


# -- commands --------------------------------------------------------------------------------------


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """zeke: Celery on pg-boss, and the Zeke task suite."""


@cli.command()
@json_option
def init(as_json: bool) -> None:
    """Install the pg-boss schema, create every task's queue, register schedules, migrate the app DB.

    For each task package P of ZEKE_TASK_MODULES (default: tasks): ``P.db.upgrade(url)`` migrates the
    app database and ``P.schedules.register(manager)`` registers its schedules, when they exist.
    """
    from zeke import registry
    from zeke.database import database_url
    from zeke.settings import get_settings

    manager = _manager()
    report: dict[str, Any] = {"schema": manager.schema, "version": manager.info.version}
    tasks = registry.load()
    for task in tasks:
        manager.create_queue(task.name, **task.queue_options)
    report["queues"] = [t.name for t in tasks]
    report["schedules"] = _install_schedules(tasks)
    url = database_url()
    for package in get_settings().task_modules:
        migrated = _hook(f"{package}.db", "upgrade", url)
        if migrated is not _MISSING:
            current = _hook(f"{package}.db", "current", url)
            report.setdefault("migrations", {})[package] = None if current is _MISSING else current
        registered = _hook(f"{package}.schedules", "register", manager)
        if registered is not _MISSING:
            report["schedules"].extend(registered or ())
    emit(report, as_json, _fields)


def _install_schedules(tasks: Any) -> list[str]:
    """The app's ``pgboss_schedules`` as beat installs them, each payload checked against its task."""
    from transport.beat import queue_options, schedule_list, timekeeper_for
    from zeke.app import app

    entries = schedule_list(app.conf.get("pgboss_schedules"))
    from zeke.schema_task import PayloadInvalid

    for entry in entries:
        if entry["name"] in tasks:
            try:
                tasks.get(entry["name"]).validate(entry.get("data") or {})
            except PayloadInvalid as exc:
                fail(f"schedule {entry['name']} {entry.get('key') or ''}: {exc}: {exc.errors}")
    if entries:
        timekeeper_for(app).install(entries, queue_options(app))
    return [f"{e['name']}{'/' + e['key'] if e.get('key') else ''} {e['cron']}" for e in entries]


_MISSING: Any = object()


def _hook(module_name: str, function: str, *args: Any) -> Any:
    """Call ``module_name.function(*args)`` if both exist; ``_MISSING`` otherwise."""
    module = _optional_module(module_name)
    fn = getattr(module, function, None)
    return _MISSING if fn is None else fn(*args)


def _optional_module(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and name.startswith(exc.name):
            return None  # the module itself is absent, not something it imports
        raise


@cli.command()
@click.argument("task_id")
@click.argument("payload", default="{}")
@json_option
def send(task_id: str, payload: str, as_json: bool) -> None:
    """Send TASK_ID with a JSON PAYLOAD ("-" reads it from stdin); validated by the task's schema."""
    from transport.exceptions import InvalidOption, InvalidPayload
    from zeke.registry import UnknownTask
    from zeke.schema_task import PayloadInvalid

    text = sys.stdin.read() if payload == "-" else payload
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        fail(f"PAYLOAD is not JSON: {exc}", 2)
    try:
        result = _jobs().send(task_id, data)
    except UnknownTask as exc:
        fail(str(exc))
    except (InvalidPayload, InvalidOption) as exc:  # valid for the task, still not storable (a NUL)
        fail(f"invalid payload for task {task_id!r}: {exc}")
    except PayloadInvalid as exc:
        if as_json:
            emit({"error": str(exc), "errors": exc.errors}, True)
        else:
            click.echo(f"zeke: {exc}", err=True)
            for err in exc.errors:
                loc = ".".join(str(p) for p in err.get("loc", ())) or "payload"
                click.echo(f"  {loc}: {err.get('msg')}", err=True)
        sys.exit(1)
    emit(result, as_json, _fields)


@cli.command()
@click.argument("job_id")
@json_option
def status(job_id: str, as_json: bool) -> None:
    """Show one job."""
    emit(_job_action(job_id, lambda jobs, parsed: jobs.status(parsed)), as_json, _fields)


@cli.command()
@click.argument("job_id")
@json_option
def cancel(job_id: str, as_json: bool) -> None:
    """Cancel a job that has not finished."""
    emit(_job_action(job_id, lambda jobs, parsed: jobs.cancel(parsed)), as_json, _fields)


@cli.command()
@click.argument("job_id")
@json_option
def retry(job_id: str, as_json: bool) -> None:
    """Retry a failed job."""
    emit(_job_action(job_id, lambda jobs, parsed: jobs.retry(parsed)), as_json, _fields)


def _job_action(job_id: str, action: Callable[[Any, str], dict[str, Any]]) -> dict[str, Any]:
    """``action(jobs, id)`` on the job JOB_ID names; exit 1 with a message when there is no such job
    or its state does not allow the action."""
    from zeke.jobs import JobNotFound, JobRefused

    parsed = _job_id(job_id)
    try:
        return action(_jobs(), parsed)
    except JobNotFound:
        fail(f"job {job_id} not found")
    except JobRefused as exc:
        fail(f"job {job_id} is {exc.status}; {exc.reason}")
    raise AssertionError  # unreachable: fail() exits


JOB_COLUMNS = ("id", "name", "state", "retry_count", "created_on", "started_on", "completed_on")


@cli.command()
@click.option("--failed", is_flag=True, help="Failed jobs only, most recent first.")
@click.option("--counts", is_flag=True, help="Job counts by state.")
@click.option("--task", "name", help="Only this task's queue.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 10_000))
@json_option
def jobs(failed: bool, counts: bool, name: str | None, limit: int, as_json: bool) -> None:
    """Recent jobs (the seed's monitoring views on pg-boss v12)."""
    from transport.monitor import Monitor

    monitor = Monitor(_manager())
    if counts:
        rows = monitor.state_counts(name=name)
        emit(rows, as_json, lambda r: table(r, ("state", "count")))
        return
    view = monitor.failed_jobs if failed else monitor.recent_jobs
    rows = view(name=name, limit=limit)
    if not failed:
        emit(rows, as_json, lambda r: table(r, JOB_COLUMNS))
        return
    for row in rows:
        row["error"] = error_text(row.get("output"))
    emit(rows, as_json, lambda r: table(r, (*JOB_COLUMNS, "error")))


def error_text(output: Any, width: int = 100) -> str | None:
    """A failed job's output as one readable line, its message first: ``Name: message``.

    pg-boss stores errors as ``{name, message, stack}`` (Celery's and Node's alike), its supervisor's
    as ``{"value": {"message": ...}}``; anything else is shown as JSON.
    """
    if output is None:
        return None
    error = output.get("value") if isinstance(output, dict) and set(output) == {"value"} else output
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        name = error.get("name")
        text = f"{name}: {error['message']}" if isinstance(name, str) and name else error["message"]
    elif isinstance(error, str):
        text = error
    else:
        text = json.dumps(error, default=str, separators=(",", ":"))
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


@cli.command()
@json_option
def schedules(as_json: bool) -> None:
    """Every pg-boss schedule."""
    from transport.monitor import Monitor

    rows = Monitor(_manager()).schedules()
    emit(rows, as_json, lambda r: table(r, ("name", "key", "cron", "timezone", "data", "last_job_id")))


@cli.command()
@json_option
def doctor(as_json: bool) -> None:
    """Compare the database's pg-boss schema with what zeke expects for its version (exit 1 on drift)."""
    from transport import drift

    manager = _manager()
    with manager.db.connection() as conn:
        report = drift.compare(conn, manager.schema)

    def human(r: drift.Report) -> str:
        head = f"pg-boss schema {r.schema!r}: version {r.version} ({r.release})"
        verdict = "drift found" if r.drift else "no drift"
        compared = "compared with zeke's catalog of this version" if r.catalog else "no stored catalog"
        return "\n".join([f"{head}; {compared}; {verdict}", *(f"  {f}" for f in r.findings)])

    emit(report.as_dict() if as_json else report, as_json, human)
    if report.drift:
        sys.exit(1)


@cli.command(name="tasks")
@json_option
def list_tasks(as_json: bool) -> None:
    """Every registered task with its queue settings."""
    from zeke import registry

    rows = [
        {"id": t.name, "concurrency_limit": t.concurrency_limit, "queue_options": t.queue_options}
        for t in registry.load()
    ]
    emit(rows, as_json, lambda r: table(r, ("id", "concurrency_limit", "queue_options")))


# -- the embedded database ------------------------------------------------------------------------


@cli.group()
def db() -> None:
    """The embedded development database (pgserver): its data is in ZEKE_DATA_DIR, else the user's data
    directory (~/.local/share/zeke on Linux). A server started here runs until `zeke db stop`."""


@db.command(name="start")
def db_start() -> None:
    """Start the embedded database (if it is not running) and print its URL."""
    from zeke import embedded

    url, started = embedded.start()
    state = "started" if started else "already running"
    click.echo(f"zeke: embedded database {state} in {embedded.pgdata()}", err=True)
    click.echo(url)


@db.command(name="stop")
def db_stop() -> None:
    """Stop the embedded database."""
    from zeke import embedded

    stopped = embedded.stop()
    click.echo(f"zeke: embedded database {'stopped' if stopped else 'was not running'}", err=True)


@db.command(name="status")
@json_option
def db_status(as_json: bool) -> None:
    """Whether the embedded database runs (exit status 1 when it does not), its URL and data directory."""
    from zeke import embedded

    url = embedded.running_url()
    data = {"running": url is not None, "url": url, "data": str(embedded.pgdata())}
    state = f"running  {url}" if url else "stopped"
    emit(data, as_json, lambda d: f"{state}\ndata     {d['data']}")
    if url is None:
        sys.exit(1)


@db.command(name="url")
def db_url() -> None:
    """Print the running embedded database's URL (e.g. for DATABASE_PRIMARY_URL)."""
    from zeke import embedded

    url = embedded.running_url()
    if url is None:
        fail("the embedded database is not running (`zeke db start` starts it)")
    click.echo(url)


# -- the API token of `zeke run` ------------------------------------------------------------------


@cli.group()
def token() -> None:
    """The API token `zeke run` uses when ZEKE_API_KEYS is not set: stored in the data directory
    (ZEKE_DATA_DIR, else the user's data directory), the same on every run until rotated."""


@token.command(name="show")
def token_show() -> None:
    """Print the stored token (generating it if there is none yet)."""
    from zeke import apitoken

    click.echo(apitoken.get())
    if os.environ.get("ZEKE_API_KEYS", "").strip():
        click.echo("zeke: ZEKE_API_KEYS is set; `zeke run` uses its first key instead", err=True)


@token.command(name="rotate")
def token_rotate() -> None:
    """Replace the stored token with a new one and print it; a running `zeke run` keeps the old one
    until it is restarted."""
    from zeke import apitoken

    click.echo(apitoken.rotate())
    click.echo(f"zeke: new token stored in {apitoken.path()}; restart `zeke run` to use it", err=True)


# -- processes -------------------------------------------------------------------------------------


def celery_command(kind: str, args: Iterable[str] = ()) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "zeke", kind, *args]


@cli.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("--dev", is_flag=True, help="Restart on code changes (watchfiles), like the seed's worker:dev.")
@click.option(
    "--watch",
    multiple=True,
    type=click.Path(exists=True, file_okay=False),
    help="With --dev: directories to watch instead of zeke/, transport/ and tasks/.",
)
@click.option("-l", "--loglevel", default="info", show_default=True)
@click.pass_context
def worker(ctx: click.Context, dev: bool, watch: tuple[str, ...], loglevel: str) -> None:
    """Run a Celery worker on every task queue; extra arguments go to `celery worker`."""
    cmd = celery_command("worker", ["-l", loglevel, *ctx.args])
    if not dev:
        os.execv(cmd[0], cmd)
    import shlex

    import watchfiles

    paths = list(watch) or [str(ROOT / p) for p in WATCHED if (ROOT / p).is_dir()]
    click.echo(f"zeke: watching {', '.join(paths)}; the worker restarts on change", err=True)
    watchfiles.run_process(
        *paths,
        target=shlex.join(cmd),
        target_type="command",
        watch_filter=watchfiles.PythonFilter(),
        callback=lambda changes: click.echo(f"zeke: {len(changes)} change(s), restarting", err=True),
    )


@cli.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("-l", "--loglevel", default="info", show_default=True)
@click.pass_context
def beat(ctx: click.Context, loglevel: str) -> None:
    """Run Celery beat (pg-boss schedules); extra arguments go to `celery beat`."""
    cmd = celery_command("beat", ["-l", loglevel, *ctx.args])
    os.execv(cmd[0], cmd)


@cli.command()
@click.option("--host", envvar="ZEKE_API_HOST", default="127.0.0.1", show_default=True)
@click.option("--port", envvar="ZEKE_API_PORT", default=8000, show_default=True, type=int)
@click.option("--log-level", default="info", show_default=True)
def api(host: str, port: int, log_level: str) -> None:
    """Serve the HTTP API and the dashboard (/dashboard) with uvicorn; OpenAPI at /docs in development."""
    import uvicorn

    from zeke.settings import get_settings

    # The app decides about anonymous access from where it is bound.
    os.environ["ZEKE_API_HOST"], os.environ["ZEKE_API_PORT"] = host, str(port)
    get_settings.cache_clear()
    uvicorn.run("zeke.api.app:app", host=host, port=port, log_level=log_level, proxy_headers=False)


@cli.command()
@click.option("--host", envvar="ZEKE_API_HOST", default="127.0.0.1", show_default=True)
@click.option("--port", envvar="ZEKE_API_PORT", default=8000, show_default=True, type=int)
@click.option(
    "--demo/--no-demo",
    default=None,
    help="Serve the sample feeds and register them as sources (default: only on the embedded database, "
    "when it has no other sources).",
)
def run(host: str, port: int, demo: bool | None) -> None:
    """Set up, then run worker, beat and API until interrupted; prints the API URL and token.

    The console gets a line per step and a summary (URLs, token, log files, commands to try on real
    ids); the worker's, beat's and API's own output goes to log files in ZEKE_LOG_DIR (default: the
    data directory's logs/). The token is ZEKE_API_KEYS's first key, else the one stored in the data
    directory (`zeke token rotate` replaces it).

    For each task package P with a ``P.demo.prepare(url, demo)`` hook (the suite's is
    :mod:`tasks.demo`): its environment goes to the children, the pipeline is kicked once the API is
    up, and a table of what it produced is printed when it settles.
    """
    from transport.redact import redact_url
    from zeke import embedded
    from zeke.database import configured_url

    stop = _stop_on_signals()
    url = configured_url()
    started = False
    if url is None:  # the embedded database, started once for all children and stopped at the end
        say(f"starting the embedded PostgreSQL in {embedded.pgdata()} ...")
        url, started = embedded.start()
        say(f"embedded PostgreSQL {'started' if started else 'already running'}")
    else:
        say(f"using DATABASE_PRIMARY_URL {redact_url(url)}")
    try:
        if not stop.is_set():
            _run(url, host, port, demo, stop, embedded_db=configured_url() is None)
    finally:
        if started:
            embedded.stop()
            say("embedded PostgreSQL stopped")


def _stop_on_signals() -> threading.Event:
    """Ctrl-C and TERM as a flag that each start-up step and the supervision loop check.

    Raising KeyboardInterrupt from the handler would land wherever the main thread happens to be, and
    some libraries turn it into their own error (pydantic's schema building reports a SchemaError), so
    `zeke run` would end with a traceback instead of a clean stop."""
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    return stop


def say(message: str) -> None:
    """A progress line of `zeke run` on the console."""
    click.echo(f"zeke: {message}")


def log_dir() -> Path:
    """Where `zeke run` writes its children's output: ZEKE_LOG_DIR, else the data directory's logs/."""
    from zeke.embedded import data_dir

    configured = os.environ.get("ZEKE_LOG_DIR", "").strip()
    return Path(configured).expanduser().resolve() if configured else data_dir() / "logs"


def zeke_command() -> str:
    """How the user types this ``zeke`` in a shell: ``zeke`` when that is the one on PATH, else its
    path (relative when it is below the current directory, as ``.venv/bin/zeke`` is for `make run`)."""
    import shutil

    mine = Path(sys.executable).parent / "zeke"
    if not mine.exists():
        return "zeke"
    found = shutil.which("zeke")
    if found and Path(found).resolve() == mine.resolve():
        return "zeke"
    try:
        return str(mine.relative_to(Path.cwd()))
    except ValueError:
        return str(mine)


def _token(keys: Sequence[str]) -> tuple[str, str]:
    """The token for the run and where it comes from."""
    from zeke import apitoken

    if keys:
        return keys[0], "ZEKE_API_KEYS"
    return apitoken.get(), f"{apitoken.path()}; `zeke token rotate` replaces it"


def _init(env: dict[str, str], log: Path) -> None:
    """`zeke init` as a child; one line on the console, its whole output in ``log``."""
    say("installing the pg-boss schema, queues, schedules and app tables (zeke init) ...")
    done = subprocess.run(
        [sys.executable, "-m", "zeke.cli", "init", "--json"], env=env, capture_output=True, text=True
    )
    log.write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        click.echo(done.stderr.rstrip() or done.stdout.rstrip(), err=True)
        fail(f"zeke init failed (exit status {done.returncode}); its output is in {log}", done.returncode)
    report = json.loads(done.stdout)
    say(
        f"pg-boss schema {report['schema']!r} (version {report['version']}), {len(report['queues'])} queues, "
        f"{len(report['schedules'])} schedules"
    )


def _run(
    url: str, host: str, port: int, demo: bool | None, stop: threading.Event, embedded_db: bool = False
) -> None:
    from zeke.settings import get_settings

    os.environ["DATABASE_PRIMARY_URL"] = url  # this process sends the demo's first jobs there too
    env = dict(os.environ)
    keys = get_settings().api_keys
    token, token_from = _token(keys)
    env["ZEKE_API_KEYS"] = ",".join(keys) if keys else token
    env["ZEKE_API_HOST"], env["ZEKE_API_PORT"] = host, str(port)
    env.setdefault("PYTHONUNBUFFERED", "1")
    logs = log_dir()
    logs.mkdir(parents=True, exist_ok=True)

    _init(env, logs / "init.log")
    if stop.is_set():
        return
    hooks = _run_hooks(env["DATABASE_PRIMARY_URL"], demo)
    for hook in hooks:
        env.update(hook.env)
        for note in hook.notes:
            say(note)
    me = [sys.executable, "-m", "zeke.cli"]
    paths = {name: logs / f"{name}.log" for name in ("worker", "beat", "api")}
    say(f"starting worker, beat and API; their logs: {logs}/{{worker,beat,api}}.log")
    children: dict[str, subprocess.Popen[bytes]] = {}
    for name, path in paths.items():
        with open(path, "wb") as out:  # each run starts its logs afresh; the child keeps the file open
            children[name] = subprocess.Popen([*me, name], env=env, stdout=out, stderr=subprocess.STDOUT)
    api = f"http://{'localhost' if host in ('127.0.0.1', '::1') else host}:{port}"
    summary = Summary(api, token, token_from, paths, zeke_command(), embedded_db)
    try:
        if not _wait_for_api(api, children["api"], stop):
            if stop.is_set():
                return
            if children["api"].poll() is None:  # an API that exited is reported by _supervise
                click.echo(f"zeke: the API did not come up in 30 s; the end of {paths['api']}:", err=True)
                click.echo(_tail(paths["api"]), err=True)
        else:
            say(f"API up at {api}, dashboard at {api}/dashboard")
            say(f"token {token}")
        for hook in hooks:
            if stop.is_set():
                return
            summary.jobs += [
                job["id"] for job in hook.kick(lambda task_id, payload: _jobs().send(task_id, payload))
            ]
        if hooks:
            say("pulling the sources now; a table of stories follows when it settles (about a minute)")
        else:  # nothing to wait for: the summary now
            _print_summary(summary, ())
        _supervise(children, stop, tick=lambda: _report(hooks, summary), logs=paths)
    finally:
        say("stopping worker, beat and API ...")
        _stop(children)  # also when something here failed first: nothing outlives `zeke run`
        for hook in hooks:
            hook.close()
        say("worker, beat and API stopped")


class Summary:
    """What `zeke run` prints once the first table is out: where everything is, and what to try."""

    def __init__(
        self, api: str, token: str, token_from: str, logs: dict[str, Path], zeke: str, embedded_db: bool
    ) -> None:
        self.api, self.token, self.token_from, self.logs, self.zeke = api, token, token_from, logs, zeke
        self.embedded_db = embedded_db
        self.jobs: list[str] = []
        self.shown = False

    def lines(self, examples: Sequence[tuple[str, str]]) -> list[str]:
        auth = f"-H 'Authorization: Bearer {self.token}'"
        first = Path(next(iter(self.logs.values()))).parent
        out = [
            f"API        {self.api}",
            f"dashboard  {self.api}/dashboard   (log in with the token)",
            f"token      {self.token}   ({self.token_from})",
            f"logs       {first}/: " + ", ".join(p.name for p in self.logs.values()),
        ]
        tries: list[tuple[str, str]] = []
        if self.embedded_db:  # another shell has no DATABASE_PRIMARY_URL: the running server's
            tries.append(
                (
                    "first, in that shell: the embedded database",
                    f"export DATABASE_PRIMARY_URL=$({self.zeke} db url)",
                )
            )
        if self.jobs:
            job = self.jobs[0]
            tries += [
                ("the first pull's job", f"{self.zeke} status {job}"),
                ("the same over HTTP", f"curl {auth} {self.api}/api/jobs/{job}"),
            ]
        tries += [(what, command.replace("{zeke}", self.zeke)) for what, command in examples]
        tries += [("jobs by state; failed jobs", f"{self.zeke} jobs --counts; {self.zeke} jobs --failed")]
        out.append("try (in another terminal):")
        for what, command in tries:
            out += [f"  # {what}", f"  {command}"]
        if self.zeke != "zeke":
            out.append(f"  (`source {Path(self.zeke).parent}/activate` puts zeke on your PATH)")
        out.append("Ctrl-C stops everything.")
        return out


def _run_hooks(url: str, demo: bool | None) -> list[Any]:
    from zeke.settings import get_settings

    found = (_hook(f"{package}.demo", "prepare", url, demo) for package in get_settings().task_modules)
    return [hook for hook in found if hook is not _MISSING and hook is not None]


def _report(hooks: Sequence[Any], summary: Summary) -> None:
    for hook in hooks:
        report = hook.poll()
        if report is None:
            continue
        say(report.title)
        if report.rows:
            click.echo(table(report.rows, report.columns))
        if not summary.shown:
            _print_summary(summary, getattr(report, "examples", ()))


def _print_summary(summary: Summary, examples: Sequence[tuple[str, str]]) -> None:
    lines = summary.lines(examples)
    summary.shown = True
    click.echo()
    for line in lines:
        click.echo(line if line.startswith("  ") else f"zeke: {line}")


def _wait_for_api(
    url: str, proc: subprocess.Popen[bytes], stop: threading.Event, timeout: float = 30.0
) -> bool:
    """Whether the API answered within ``timeout`` seconds (False at once when a stop is asked)."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None and not stop.is_set():
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code < 500:
                return True
        except httpx.HTTPError:
            pass
        stop.wait(0.2)
    return False


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join("    " + line for line in text.splitlines()[-lines:])


def _supervise(
    children: dict[str, subprocess.Popen[bytes]],
    stop: threading.Event,
    tick: Callable[[], None] | None = None,
    logs: dict[str, Path] | None = None,
) -> None:
    """Wait until one child exits or a stop is asked, calling ``tick`` meanwhile; then exit (the
    caller stops the children). A child that exits on its own has the end of its log shown."""
    stopping = False
    tick_failed = False
    code = 0
    while not stopping and not stop.is_set():
        for name, proc in children.items():
            if proc.poll() is not None:
                log = (logs or {}).get(name)
                where = f"; the end of {log}:" if log else ""
                click.echo(f"zeke: {name} exited with {proc.returncode}{where}", err=True)
                if log:
                    click.echo(_tail(log), err=True)
                code, stopping = proc.returncode or 1, True
                break
        if tick is not None and not stopping:
            try:
                tick()
            except Exception as exc:  # a report is not worth stopping the app for
                if not tick_failed:
                    click.echo(f"zeke: cannot report on the pipeline: {type(exc).__name__}: {exc}", err=True)
                tick_failed = True
        stop.wait(0.2)
    sys.exit(code)


def _stop(children: dict[str, subprocess.Popen[bytes]]) -> None:
    """TERM the children still running; KILL those still running 20 s later."""
    for proc in children.values():
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + 20
    for proc in children.values():
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()


def main(argv: Sequence[str] | None = None) -> None:
    from transport.errors import DatabaseUnavailable, InvalidDatabaseURL
    from transport.redact import redact
    from zeke.database import configured_url

    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="zeke")
    except DatabaseUnavailable as exc:
        # libpq's first line names the host and port; the rest is advice.
        fail(f"cannot use the database: {redact(str(exc).strip().splitlines()[0], configured_url())}", 3)
    except InvalidDatabaseURL as exc:
        fail(f"not a valid database URL: {redact(str(exc).strip(), configured_url())}", 3)


if __name__ == "__main__":
    main()
