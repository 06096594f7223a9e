"""Fixtures of the rollups tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from traksense.rollups.test_jobs_support import reset_jobs


@pytest.fixture
def clean_jobs(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """ts_job as migrate made it, before and after the test (the runner commits its rows on
    its own connection, outside the test's transaction)."""
    with django_db_blocker.unblock():
        reset_jobs()
    yield
    with django_db_blocker.unblock():
        reset_jobs()
