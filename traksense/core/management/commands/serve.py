"""traksense serve: migrate, then serve the API (gunicorn) with the job scheduler beside it."""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
from argparse import ArgumentParser
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import connection, connections

from traksense.core.bootstrap import ensure_demo_tenant


class Command(BaseCommand):
    help = "Migrate, then serve the HTTP API and run the job scheduler until interrupted."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--workers", type=int, default=2, help="API worker processes")
        parser.add_argument("--no-scheduler", action="store_true", help="serve the API only")
        parser.add_argument("--no-migrate", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        if not options["no_migrate"]:
            call_command("migrate", interactive=False, verbosity=0)
            self.stdout.write("database migrated")
        key = ensure_demo_tenant()
        if key is not None:
            self.stdout.write(
                self.style.SUCCESS(f"demo tenant created; its API key (shown once): {key}")
            )
        database_url = _database_url()
        connections.close_all()  # never share a socket with forked workers

        if settings.SCHEDULER_ENABLED and not options["no_scheduler"]:
            worker = subprocess.Popen(
                [sys.executable, "-m", "traksense", "worker"],
                env={**os.environ, "DATABASE_URL": database_url},
            )
            atexit.register(_stop, worker)
            self.stdout.write(f"scheduler running (pid {worker.pid})")

        bind = f"{options['host']}:{options['port']}"
        self.stdout.write(f"serving on http://{bind}/ (Ctrl-C stops)")
        _Gunicorn(bind, options["workers"]).run()


def _database_url() -> str:
    """The URL the scheduler subprocess uses: the embedded server's socket once it is running."""
    with connection.cursor():  # starts the embedded server if needed
        pass
    params = connection.get_connection_params()
    user = params.get("user") or ""
    host = params.get("host") or ""
    port = params.get("port") or ""
    dbname = params["dbname"]
    from psycopg.conninfo import make_conninfo

    return make_conninfo(
        "", dbname=dbname, user=user, host=host, port=port, password=params.get("password")
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


class _Gunicorn:
    """Gunicorn's arbiter run in-process, so Ctrl-C stops workers, scheduler and database."""

    def __init__(self, bind: str, workers: int) -> None:
        from gunicorn.app.base import BaseApplication

        outer = self

        class App(BaseApplication):  # type: ignore[misc]
            def load_config(self) -> None:
                self.cfg.set("bind", outer.bind)
                self.cfg.set("workers", outer.workers)
                self.cfg.set("accesslog", None)
                self.cfg.set("timeout", 120)

            def load(self) -> Any:
                from traksense.wsgi import application

                return application

        self.bind = bind
        self.workers = workers
        self.app = App()

    def run(self) -> None:
        self.app.run()
