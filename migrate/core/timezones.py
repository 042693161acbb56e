"""The programme's time zone: wave windows are wall-clock times in it, and reports show every time in it.

The project file names it (``timezone: America/Belize``, an IANA name). Without one, the migration host's own
zone is used (``TZ``, else the system's), and reports say so: two hosts in different zones would then show
different times, which naming the zone avoids. The store keeps UTC (``YYYY-MM-DDTHH:MM:SSZ``) throughout.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

#: How the store writes a moment (always UTC).
STORE_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def zone_named(name: str) -> ZoneInfo:
    """The zone of an IANA name; ValueError (for the project file's validation) when there is none."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not a time zone name: give an IANA name such as America/Belize, "
                         "Europe/Lisbon or UTC")


@dataclass(frozen=True)
class Zone:
    """A zone and where it came from: the project file (``configured``) or this host."""

    tz: dt.tzinfo
    name: str
    configured: bool

    @classmethod
    def of(cls, name: str | None) -> Zone:
        if name:
            return cls(zone_named(name), name, True)
        import tzlocal

        local = tzlocal.get_localzone()
        return cls(local, str(getattr(local, "key", None) or local), False)

    @classmethod
    def utc(cls) -> Zone:
        return cls(dt.UTC, "UTC", True)

    def now(self) -> dt.datetime:
        return dt.datetime.now(self.tz)

    def from_store(self, stamp: str) -> dt.datetime:
        """A store timestamp as an aware time in this zone (ValueError if it is none)."""
        return dt.datetime.strptime(stamp, STORE_FORMAT).replace(tzinfo=dt.UTC).astimezone(self.tz)

    def wall(self, naive: dt.datetime) -> dt.datetime:
        """A wall-clock time of the programme (a window's start) as an aware time in this zone."""
        return naive.replace(tzinfo=self.tz)

    def show_iso(self, text: str | None) -> str:
        """An ISO 8601 time (as reports carry them) as people read it, in this zone: ``2030-06-02 04:00 CST``."""
        return show(dt.datetime.fromisoformat(text).astimezone(self.tz)) if text else ""

    def offset(self, when: dt.datetime | None = None) -> str:
        """``UTC-06:00`` for a moment (default now)."""
        return utc_offset((when or self.now()).astimezone(self.tz))

    def describe(self) -> str:
        """The zone for a report's header, e.g. ``America/Belize (UTC-06:00)``."""
        text = f"{self.name} ({self.offset()})"
        return text if self.configured else f"{text}, this host's zone: the project file names none"


def utc_offset(when: dt.datetime) -> str:
    delta = when.utcoffset() or dt.timedelta(0)
    minutes = int(delta.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    return f"UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def abbreviation(when: dt.datetime) -> str:
    """The zone's short name at that moment (CST, CEST), or its UTC offset where the zone has no letters."""
    name = when.tzname() or ""
    return name if name and name[0].isalpha() else utc_offset(when)


def show(when: dt.datetime | None) -> str:
    """A moment to the minute with its zone, as people read it: ``2030-06-01 22:00 CST``; '' for none."""
    return f"{when:%Y-%m-%d %H:%M} {abbreviation(when)}" if when else ""


def iso(when: dt.datetime | None) -> str | None:
    """A moment for JSON and CSV: ISO 8601 with its offset, to the minute (``2030-06-01T22:00-06:00``)."""
    return when.isoformat(timespec="minutes") if when else None
