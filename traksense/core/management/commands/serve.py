"""traksense serve: migrate, then run the API (gunicorn) and the job scheduler until Ctrl-C.

This process supervises its children: gunicorn serving traksense.asgi (the command line of
core/webserver.py), `traksense worker`, and
`traksense mqtt` (the MQTT consumer) when MQTT_URL is set.
All get the resolved DATABASE_URL (for the embedded server: its socket), so only this process
owns the embedded PostgreSQL and stops it when it exits.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from argparse import ArgumentParser
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import connection, connections
from psycopg.conninfo import make_conninfo

from traksense.core.bootstrap import ensure_demo_tenant
from traksense.core.webserver import WORKER_CONNECTIONS, gunicorn_argv, raise_open_files_limit


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
                self.style.SUCCESS(f"demo tenant created; API key (shown once): {key}")
            )
        env = {**os.environ, "DATABASE_URL": _database_url()}
        env.setdefault("PROMETHEUS_MULTIPROC_DIR", _metrics_dir())
        connections.close_all()

        bind = f"{options['host']}:{options['port']}"
        # Each open connection is a file descriptor, inherited limit included by the children.
        raise_open_files_limit(4 * WORKER_CONNECTIONS + 1024)
        children = [
            subprocess.Popen(gunicorn_argv(bind, options["workers"]), env=env),
        ]
        if settings.SCHEDULER_ENABLED and not options["no_scheduler"]:
            children.append(
                subprocess.Popen([sys.executable, "-m", "traksense", "worker"], env=env)
            )
            self.stdout.write("scheduler running")
        if settings.MQTT_URL:
            children.append(subprocess.Popen([sys.executable, "-m", "traksense", "mqtt"], env=env))
            self.stdout.write("MQTT consumer running (MQTT_URL)")
        self.stdout.write(f"serving on http://{bind}/ (Ctrl-C stops)")
        stopping: list[int] = []

        def stop(signum: int, frame: object) -> None:
            stopping.append(signum)

        # Explicit handlers: SIGTERM from a supervisor, and SIGINT even when the shell that
        # started us in the background set it to "ignore".
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        try:
            while not stopping and all(child.poll() is None for child in children):
                time.sleep(0.5)
        finally:
            _stop(children)
            self.stdout.write("stopped")
        failed = [child.args for child in children if child.returncode not in (0, -2, -15)]
        if failed:
            self.stderr.write(f"stopped because a child process exited: {failed}")
            sys.exit(1)


def _database_url() -> str:
    """A URL the children can use directly: for the embedded server, its socket directory."""
    connection.ensure_connection()  # starts the embedded server if needed
    params = connection.get_connection_params()
    keep = ("dbname", "user", "password", "host", "port", "sslmode")
    return make_conninfo("", **{k: v for k, v in params.items() if k in keep and v})


def _metrics_dir() -> str:
    """prometheus_client's multiprocess mode: each gunicorn worker writes its counters to files
    here, merged at scrape time. Emptied at start, as counters restart with the service."""
    directory = settings.TRAKSENSE_HOME / "metrics"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    return str(directory)


def _stop(children: list[subprocess.Popen[bytes]]) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    for child in children:
        try:
            child.wait(15)
        except subprocess.TimeoutExpired:
            child.kill()
