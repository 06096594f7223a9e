"""Sizes and durations as people read them: the status page and the CLI's tables."""

from __future__ import annotations


def human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"  # pragma: no cover - the loop always returns


def human_size(n: float | None) -> str:
    """human_bytes, or a dash for unknown, "unbounded" for a tier kept forever."""
    if n is None:
        return "—"
    return "unbounded" if n == float("inf") else human_bytes(n)


def human_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    s = abs(seconds)
    if s < 90:
        text = f"{s:.0f} s"
    elif s < 90 * 60:
        text = f"{s / 60:.0f} min"
    elif s < 48 * 3600:
        text = f"{s / 3600:.1f} h"
    else:
        text = f"{s / 86400:.1f} d"
    return text
