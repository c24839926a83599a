"""Business hours with a fixed clock: wall-clock intervals in the advisor's zone, across a DST
change, with closed dates, and the next opening said in the advisor's language."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.hours import BusinessHours, describe_opening

MADRID = {
    "business_hours": {
        "time_zone": "Europe/Madrid",
        "weekly": {"mon": ["09:00-14:00", "16:00-19:00"], "tue": ["09:00-14:00"],
                   "sat": ["10:00-13:00"]},
        "closed": ["2026-12-08"],
    }
}  # fmt: skip


def hours() -> BusinessHours:
    found = BusinessHours.from_settings(MADRID)
    assert found is not None
    return found


def test_no_business_hours_means_always_open() -> None:
    assert BusinessHours.from_settings({}) is None


@pytest.mark.parametrize(
    ("utc", "is_open"),
    [
        # Monday 26 Oct 2026, the day after Madrid left summer time (UTC+1): 09:00 is 08:00 UTC.
        ("2026-10-26T07:59:00", False),
        ("2026-10-26T08:00:00", True),
        ("2026-10-26T13:30:00", False),  # the lunch break, 14:30 local
        ("2026-10-26T15:00:00", True),
        # Monday 19 Oct 2026, summer time (UTC+2): 09:00 is 07:00 UTC.
        ("2026-10-19T07:00:00", True),
        ("2026-10-19T06:59:00", False),
        # Tuesday 8 Dec 2026 is a closed date, though Tuesdays open.
        ("2026-12-08T10:00:00", False),
        ("2026-12-15T10:00:00", True),
    ],
)
def test_open_by_wall_clock_in_the_advisors_zone(utc: str, is_open: bool) -> None:
    assert hours().is_open(datetime.fromisoformat(utc).replace(tzinfo=UTC)) is is_open


def test_the_next_opening_skips_closed_days_and_crosses_dst() -> None:
    # Saturday 24 Oct 2026 at 14:00 local (summer time), closed; Madrid's clocks go back on
    # Sunday; the next opening is Monday 09:00 winter time (08:00 UTC).
    saturday = datetime(2026, 10, 24, 12, 0, tzinfo=UTC)
    opening = hours().next_opening(saturday)
    assert opening is not None and opening.astimezone(UTC) == datetime(2026, 10, 26, 8, tzinfo=UTC)
    # Monday 7 Dec 19:30, then Tuesday 8 Dec closed: Saturday 12 Dec 10:00.
    monday_evening = datetime(2026, 12, 7, 18, 30, tzinfo=UTC)
    after = hours().next_opening(monday_evening)
    assert after is not None and after.isoformat() == "2026-12-12T10:00:00+01:00"


def test_open_now_is_its_own_next_opening() -> None:
    now = datetime(2026, 10, 26, 9, 0, tzinfo=UTC)
    assert hours().next_opening(now) == now.astimezone(hours().zone)


@pytest.mark.parametrize(
    ("language", "said"),
    [("es", "sábado 12 de diciembre, 10:00"), ("en", "Saturday, December 12, 10:00")],
)
def test_the_opening_is_said_in_the_advisors_language(language: str, said: str) -> None:
    opening = hours().next_opening(datetime(2026, 12, 7, 18, 30, tzinfo=UTC))
    assert opening is not None and describe_opening(opening, language) == said
