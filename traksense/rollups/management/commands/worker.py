"""traksense worker [--once]: run the job scheduler (no HTTP server)."""

from __future__ import annotations

import signal
import threading
from argparse import ArgumentParser
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from traksense.rollups.jobs import JOBS
from traksense.rollups.runner import Outcome, sync_jobs, worker_id
from traksense.rollups.scheduler import Scheduler


class Command(BaseCommand):
    help = (
        "Run the job scheduler: refresh, compression and retention jobs on their schedules. "
        "SIGTERM or Ctrl-C stops it after the job in progress; a second one stops it at once."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--once", action="store_true", help="run the jobs due now, then exit")

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.SCHEDULER_ENABLED:
            raise CommandError("the scheduler is disabled (SCHEDULER_ENABLED=false)")
        scheduler = Scheduler(JOBS, report=self._report, worker=worker_id())
        if options["once"]:
            sync_jobs(JOBS)
            outcomes = scheduler.run_due()
            self.stdout.write(f"worker: ran {len(outcomes)} due job(s)")
            return

        stop = threading.Event()

        def request_stop(signum: int, frame: FrameType | None) -> None:
            self.stdout.write(f"worker: {signal.Signals(signum).name}, stopping after this job")
            stop.set()
            # A second signal stops at once: a killed job leaves no partial result anyway.
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        self.stdout.write(
            f"worker {scheduler.worker}: scheduling {len(JOBS)} jobs "
            f"({', '.join(job.name for job in JOBS)})"
        )
        scheduler.run_forever(stop)
        self.stdout.write("worker: stopped")

    def _report(self, outcome: Outcome) -> None:
        self.stdout.write(outcome.line())
        self.stdout.flush()
