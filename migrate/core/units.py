"""Numbers for people: byte counts in KB/MB/GB (decimal, as disks and links are sold) and short durations."""

from __future__ import annotations


def human_bytes(n: int | float | None) -> str:
    if n is None:
        return ""
    value = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(value) < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


def gb(n: int | float | None) -> float:
    """Bytes as GB rounded for tables and spreadsheets."""
    return round((n or 0) / 1e9, 3)
