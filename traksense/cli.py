"""The `traksense` console command: Django's manage.py under the project's name."""

from __future__ import annotations

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "traksense.settings")
    from django.core.management import execute_from_command_line

    from traksense.configerror import ConfigError

    try:
        execute_from_command_line(sys.argv)
    except ConfigError as exc:
        # A bad environment variable is the operator's to fix: one line, not a traceback.
        sys.exit(f"traksense: configuration error: {exc}")


if __name__ == "__main__":
    main()
