"""The command line that serves the API: `traksense serve`, the benches and the slow-client tests
all run exactly this, so what is measured and tested is what is served.

gunicorn's asyncio worker (`-k asgi`) in front of traksense.asgi, which hands Django only whole
requests: a client that sends its request byte by byte, or idles on a kept-alive connection,
holds a socket of the event loop, not the worker (docs/operations.md, "The front").
"""

from __future__ import annotations

import resource
import sys

# Connections one worker process holds open at once (idle keep-alive and slow ones included);
# beyond that the worker stops accepting until some close.
WORKER_CONNECTIONS = 2000
# Seconds an idle kept-alive connection stays open (gunicorn's default is 2).
KEEP_ALIVE = 5


def gunicorn_argv(bind: str, workers: int, timeout: int = 120, quiet: bool = False) -> list[str]:
    """`timeout` bounds how long a request body may take to arrive (and a worker's silence)."""
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "traksense.asgi:application",
        "--worker-class",
        "asgi",
        "--bind",
        bind,
        "--workers",
        str(workers),
        "--worker-connections",
        str(WORKER_CONNECTIONS),
        "--keep-alive",
        str(KEEP_ALIVE),
        "--timeout",
        str(timeout),
        "--graceful-timeout",
        "10",
        "--no-control-socket",
    ]
    if quiet:
        argv += ["--log-level", "warning"]
    return argv


def raise_open_files_limit(wanted: int) -> None:
    """Lift this process's soft limit on open files (often 1,024) towards `wanted`, within the
    hard limit: every connection, served or held, is a file descriptor."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
