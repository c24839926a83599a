"""An advisor's business hours (`settings.business_hours`): whether a person is there now, and
when one will be back.

    {"time_zone": "America/Bogota",
     "weekly": {"mon": ["09:00-13:00", "14:00-18:00"], "sat": ["09:00-12:00"]},
     "closed": ["2026-12-25"],
     "alerts_any_time": false}

Times are wall-clock times in `time_zone` (so a DST change moves nothing the advisor wrote);
a day missing from `weekly` is closed, as is every date in `closed`. No `business_hours` means
always open.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# How far ahead to look for the next opening (closed dates can make a long gap).
_HORIZON_DAYS = 60

_DAY_NAMES = {
    "es": ("lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo"),
    "en": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
}
_MONTH_NAMES = {
    "es": ("enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto",
           "septiembre", "octubre", "noviembre", "diciembre"),
    "en": ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December"),
}  # fmt: skip


@dataclass(frozen=True)
class BusinessHours:
    zone: ZoneInfo
    weekly: dict[int, list[tuple[time, time]]]
    closed: frozenset[date]
    alerts_any_time: bool = False

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> BusinessHours | None:
        raw = settings.get("business_hours")
        if not isinstance(raw, dict):
            return None
        weekly: dict[int, list[tuple[time, time]]] = {}
        for day, intervals in (raw.get("weekly") or {}).items():
            weekly[DAYS.index(str(day)[:3].lower())] = [
                (time.fromisoformat(start), time.fromisoformat(end))
                for start, end in (str(i).split("-", 1) for i in intervals)
            ]
        return cls(
            zone=ZoneInfo(str(raw.get("time_zone") or "UTC")),
            weekly=weekly,
            closed=frozenset(date.fromisoformat(str(d)) for d in raw.get("closed") or []),
            alerts_any_time=bool(raw.get("alerts_any_time", False)),
        )

    def _intervals(self, day: date) -> list[tuple[datetime, datetime]]:
        if day in self.closed:
            return []
        return [
            (datetime.combine(day, start, self.zone), datetime.combine(day, end, self.zone))
            for start, end in self.weekly.get(day.weekday(), [])
        ]

    def is_open(self, now: datetime) -> bool:
        local = now.astimezone(self.zone)
        return any(start <= local < end for start, end in self._intervals(local.date()))

    def next_opening(self, now: datetime) -> datetime | None:
        """The start of the next open interval after `now` (now itself when open), in the
        advisor's time zone, or None when nothing opens within the horizon."""
        if self.is_open(now):
            return now.astimezone(self.zone)
        local = now.astimezone(self.zone)
        for offset in range(_HORIZON_DAYS):
            for start, _ in self._intervals(local.date() + timedelta(days=offset)):
                if start > local:
                    return start
        return None


def describe_opening(opening: datetime, language: str) -> str:
    """`lunes 30 de noviembre, 09:00` / `Monday, November 30, 09:00`, in the opening's zone."""
    lang = language[:2].lower() if language[:2].lower() in _DAY_NAMES else "es"
    day, month = _DAY_NAMES[lang][opening.weekday()], _MONTH_NAMES[lang][opening.month - 1]
    clock = opening.strftime("%H:%M")
    if lang == "en":
        return f"{day}, {month} {opening.day}, {clock}"
    return f"{day} {opening.day} de {month}, {clock}"
