"""The ``wamesh`` command: run one service, run the local infrastructure, migrate."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from wamesh_kit import registry
from wamesh_kit.localinfra import LocalInfra

app = typer.Typer(help="wamesh: a multi-tenant WhatsApp backend on Twilio.", no_args_is_help=True)
dev_app = typer.Typer(help="Local development: real servers from Python wheels.")
app.add_typer(dev_app, name="dev")
for _service in registry.services().values():
    _group = _service.load_cli()
    if _group is not None:
        app.add_typer(_group, name=_service.name)
    for _name, _more in _service.load_more_cli().items():
        app.add_typer(_more, name=_name)
for _tool in registry.dev_tools().values():
    _group = _tool.load_cli()
    if _group is not None:
        dev_app.add_typer(_group, name=_tool.name)
console = Console(stderr=True)


@app.command()
def serve(service: Annotated[str, typer.Argument(help="the service to run")]) -> None:
    """Run one service in the foreground, configured only from WAMESH_* variables."""
    try:
        main = registry.service(service).load_main()
    except KeyError:
        known = ", ".join(registry.services()) or "none yet"
        console.print(f"[red]unknown service {service!r}[/red]; available: {known}")
        raise typer.Exit(2) from None
    main()


@app.command()
def migrate(
    service: Annotated[str, typer.Argument(help="the service whose database to migrate")],
    database_url: Annotated[
        str, typer.Option(envvar="WAMESH_DATABASE_URL", help="the service's own database")
    ],
    revision: Annotated[str, typer.Option(help="target revision")] = "head",
) -> None:
    """Bring a service's database to a revision of its own migration history."""
    from wamesh_kit.migrations import service_histories, upgrade_database

    histories = {history.name: history for history in service_histories()}
    if service not in histories:
        known = ", ".join(histories) or "none yet"
        console.print(f"[red]no migrations for {service!r}[/red]; services with some: {known}")
        raise typer.Exit(2)
    upgrade_database(database_url, histories[service], revision)
    console.print(f"{service}: database at {revision}")


def _wait_for_signal() -> None:
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()


@dev_app.command("infra")
def dev_infra(
    as_json: Annotated[
        bool, typer.Option("--json", help="print one JSON line for scripts")
    ] = False,
    data_dir: Annotated[Path, typer.Option(help="where the servers keep their data")] = Path(
        ".wamesh/dev"
    ),
) -> None:
    """Start real PostgreSQL (one database per service) and Redis until Ctrl-C."""
    with LocalInfra(data_dir) as infra:
        if as_json:
            print(json.dumps(infra.describe()), flush=True)
        else:
            _print_infra(infra)
        _wait_for_signal()


@dev_app.command("up")
def dev_up(
    data_dir: Annotated[Path, typer.Option(help="where the servers keep their data")] = Path(
        ".wamesh/dev"
    ),
) -> None:
    """Start the infrastructure, migrate every service's database, run every service and
    every development tool (the local Twilio sandbox)."""
    from wamesh_kit.migrations import MigrationHistory, upgrade_database

    with LocalInfra(data_dir) as infra:
        for spec in registry.services().values():
            if spec.migrations is not None and spec.database is not None:
                history = MigrationHistory(spec.name, spec.migrations)
                upgrade_database(infra.postgres.dsn(spec.database), history)
        _print_infra(infra)
        tools_env = {k: v for tool in registry.dev_tools().values() for k, v in tool.service_env}
        children = [_spawn_service(spec, infra, tools_env) for spec in registry.services().values()]
        children += [_spawn_tool(tool, data_dir) for tool in registry.dev_tools().values()]
        console.print(f"services: {', '.join(registry.services()) or 'none yet'}")
        console.print(f"development tools: {', '.join(registry.dev_tools()) or 'none'}")
        try:
            _wait_for_signal()
        finally:
            for child in children:
                child.send_signal(signal.SIGTERM)
            for child in children:
                child.wait(timeout=30)


def _spawn_service(
    spec: registry.Service, infra: LocalInfra, tools_env: dict[str, str]
) -> subprocess.Popen[bytes]:
    env = {
        **tools_env,
        **os.environ,
        "WAMESH_REDIS_URL": infra.redis.url,
        "WAMESH_SERVICE_NAME": spec.name,
    }
    if spec.database is not None:
        env["WAMESH_DATABASE_URL"] = infra.postgres.dsn(spec.database)
    return subprocess.Popen([sys.executable, "-m", "wamesh_kit", "serve", spec.name], env=env)


def _spawn_tool(tool: registry.DevTool, data_dir: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "WAMESH_DEV_DATA_DIR": str(data_dir / tool.name)}
    return subprocess.Popen([sys.executable, "-m", "wamesh_kit", "dev", "run", tool.name], env=env)


@dev_app.command("run")
def dev_run(tool: Annotated[str, typer.Argument(help="the development tool to run")]) -> None:
    """Run one development tool in the foreground (what `wamesh dev up` starts)."""
    tools = registry.dev_tools()
    if tool not in tools:
        console.print(f"[red]unknown tool {tool!r}[/red]; available: {', '.join(tools) or 'none'}")
        raise typer.Exit(2)
    tools[tool].load_main()()


def _print_infra(infra: LocalInfra) -> None:
    table = Table(title="wamesh local infrastructure (Ctrl-C stops it)")
    table.add_column("what")
    table.add_column("url")
    table.add_row("redis", infra.redis.url)
    table.add_row("postgres", infra.postgres.dsn())
    for name in infra.databases:
        table.add_row(f"  {name} database", infra.postgres.dsn(name))
    Console().print(table)


def main() -> None:
    app()
