"""Azure ML schedule triggers and when they fire next: pure functions, no clock of their own.

A trigger is Azure's (`schedule.schema.json`):
- `type: recurrence`, `frequency` minute | hour | day | week | month, `interval` (every N of them), and
  optionally `schedule` {hours, minutes, week_days (week), month_days (month)}: the times within each
  period it fires at. Periods count from `start_time` (the first one holds it); without `schedule`, a
  recurrence fires at `start_time` + k × interval.
- `type: cron`, `expression`: the standard five fields (minute hour day-of-month month day-of-week,
  with `*`, lists, ranges, steps and names; day-of-month and day-of-week restricted both: either matches).
Both take `start_time` (ISO 8601; nothing fires before it) and `time_zone` (UTC, or an IANA name such as
Europe/Paris; the hours and minutes are that zone's). Times in and out are naive UTC, as the registry's.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from appliance.specs import SpecError

FREQUENCIES = ("minute", "hour", "day", "week", "month")
WEEK_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
MAX_INTERVAL = 1000
HORIZON_DAYS = 366 * 8  # the furthest a next run is looked for (cron's Feb 29 on a Monday comes within 28 years;
# such a trigger is refused at creation rather than searched for)
UTC_NAMES = ("UTC", "Coordinated Universal Time", "Etc/UTC")


@dataclass(frozen=True)
class Trigger:
    """A parsed trigger (`parse` makes it; `as_dict` gives back its Azure shape, normalized)."""

    type: str  # recurrence | cron
    start_time: datetime  # naive UTC
    time_zone: str = "UTC"
    frequency: str = "day"
    interval: int = 1
    hours: tuple[int, ...] = ()
    minutes: tuple[int, ...] = ()
    week_days: tuple[int, ...] = ()  # 0 = Monday
    month_days: tuple[int, ...] = ()
    expression: str = ""
    cron: tuple[frozenset[int], ...] = field(default=(), compare=False)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type}
        if self.type == "cron":
            out["expression"] = self.expression
        else:
            out |= {"frequency": self.frequency, "interval": self.interval}
            when: dict[str, list[Any]] = {k: list(v) for k, v in (("hours", self.hours), ("minutes", self.minutes),
                                            ("month_days", self.month_days)) if v}
            if self.week_days:
                when["week_days"] = [WEEK_DAYS[d] for d in self.week_days]
            if when:
                out["schedule"] = when
        return out | {"start_time": self.start_time.replace(tzinfo=UTC).isoformat(), "time_zone": self.time_zone}


def _zone(name: str) -> ZoneInfo:
    return ZoneInfo("UTC" if name in UTC_NAMES else name)


def _ints(value: Any, where: str, low: int, high: int) -> tuple[int, ...]:
    items = value if isinstance(value, list) else [value]
    out = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int) or not low <= item <= high:
            raise SpecError(f"{item!r}: a whole number from {low} to {high} (or a list of them)", field=where)
        out.append(item)
    if not out:
        raise SpecError("an empty list: give at least one value, or leave the field out", field=where)
    return tuple(sorted(set(out)))


def _start(value: Any, zone: ZoneInfo, now: datetime) -> datetime:
    if value is None:
        return now
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, date):
        parsed = datetime(value.year, value.month, value.day)
    else:
        try:
            parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            raise SpecError(f"{str(value)[:100]!r}: an ISO 8601 time such as 2025-01-31T03:15:00",
                            field="trigger.start_time") from None
    if parsed.tzinfo is None:  # Azure: a start time without an offset is in the trigger's time zone
        parsed = parsed.replace(tzinfo=zone)
    return parsed.astimezone(UTC).replace(tzinfo=None)


ALLOWED = {"recurrence": {"type", "frequency", "interval", "schedule", "start_time", "end_time", "time_zone"},
           "cron": {"type", "expression", "start_time", "end_time", "time_zone"}}


def parse(body: Any, now: datetime) -> Trigger:
    """An Azure trigger (a mapping), checked; `now` (naive UTC) is its start when it gives none."""
    if not isinstance(body, dict):
        raise SpecError(f"{str(body)[:100]!r}: a mapping with type recurrence or cron", field="trigger")
    kind = body.get("type")
    if kind not in ALLOWED:
        raise SpecError(f"type {kind!r}: use recurrence or cron", field="trigger.type")
    for key in body:
        if key not in ALLOWED[kind]:
            raise SpecError(f"no such field in a {kind} trigger; use {', '.join(sorted(ALLOWED[kind]))}",
                            field=f"trigger.{key}")
    if body.get("end_time") is not None:
        raise SpecError("end_time is not supported here; delete the monitor to stop it", field="trigger.end_time")
    zone_name = body.get("time_zone") or "UTC"
    try:
        zone = _zone(str(zone_name))
    except (ZoneInfoNotFoundError, ValueError):
        raise SpecError(f"{str(zone_name)[:100]!r}: UTC or an IANA time zone name such as Europe/Paris",
                        field="trigger.time_zone") from None
    start = _start(body.get("start_time"), zone, now)
    if kind == "cron":
        expression = body.get("expression")
        if not isinstance(expression, str):
            raise SpecError(f"{expression!r}: five cron fields, such as '15 3 * * *'", field="trigger.expression")
        trigger = Trigger(type="cron", start_time=start, time_zone=str(zone_name), expression=" ".join(
            expression.split()), cron=parse_cron(expression))
        if next_run(trigger, start) is None:
            raise SpecError(f"{expression!r} never fires within {HORIZON_DAYS // 366} years",
                            field="trigger.expression")
        return trigger
    frequency = body.get("frequency")
    if frequency not in FREQUENCIES:
        raise SpecError(f"{frequency!r}: use {', '.join(FREQUENCIES)}", field="trigger.frequency")
    interval = body.get("interval", 1)
    if isinstance(interval, bool) or not isinstance(interval, int) or not 1 <= interval <= MAX_INTERVAL:
        raise SpecError(f"{interval!r}: a whole number from 1 to {MAX_INTERVAL}", field="trigger.interval")
    when = body.get("schedule") or {}
    if not isinstance(when, dict):
        raise SpecError(f"{str(when)[:100]!r}: a mapping of hours, minutes, week_days or month_days",
                        field="trigger.schedule")
    allowed = {"minute": set(), "hour": {"minutes"}, "day": {"hours", "minutes"},
               "week": {"hours", "minutes", "week_days"}, "month": {"hours", "minutes", "month_days"}}[frequency]
    for key in when:
        if key not in allowed:
            use = f"use {', '.join(sorted(allowed))}" if allowed else "a minute trigger takes no schedule"
            raise SpecError(f"not with frequency {frequency}; {use}", field=f"trigger.schedule.{key}")
    week_days: tuple[int, ...] = ()
    if "week_days" in when:
        names = when["week_days"] if isinstance(when["week_days"], list) else [when["week_days"]]
        bad = [d for d in names if str(d).lower() not in WEEK_DAYS]
        if bad or not names:
            raise SpecError(f"{bad[0] if bad else names!r}: week days are {', '.join(WEEK_DAYS)}",
                            field="trigger.schedule.week_days")
        week_days = tuple(sorted({WEEK_DAYS.index(str(d).lower()) for d in names}))
    return Trigger(type="recurrence", start_time=start, time_zone=str(zone_name), frequency=frequency,
                   interval=interval,
                   hours=_ints(when["hours"], "trigger.schedule.hours", 0, 23) if "hours" in when else (),
                   minutes=_ints(when["minutes"], "trigger.schedule.minutes", 0, 59) if "minutes" in when else (),
                   week_days=week_days,
                   month_days=_ints(when["month_days"], "trigger.schedule.month_days", 1, 31)
                   if "month_days" in when else ())


def from_dict(body: dict[str, Any]) -> Trigger:
    """A stored trigger (as `Trigger.as_dict` wrote it) back."""
    return parse(body, datetime.now(UTC).replace(tzinfo=None))


# -- cron --------------------------------------------------------------------------------------

CRON_FIELDS = (("minute", 0, 59, ()), ("hour", 0, 23, ()), ("day of month", 1, 31, ()),
               ("month", 1, 12, ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")),
               ("day of week", 0, 7, ("sun", "mon", "tue", "wed", "thu", "fri", "sat")))


def _cron_value(text: str, low: int, names: tuple[str, ...]) -> int:
    if text.lower() in names:
        return names.index(text.lower()) + low
    if not text.isdigit():
        raise ValueError(text)
    return int(text)


def parse_cron(expression: str) -> tuple[frozenset[int], ...]:
    """The five fields' sets of values (day of week 0-6, Sunday 0; 7 is Sunday too)."""
    parts = expression.split()
    if len(parts) != 5:
        raise SpecError(f"{expression[:100]!r}: five fields (minute hour day-of-month month day-of-week), "
                        f"not {len(parts)}", field="trigger.expression")
    out = []
    for text, (what, low, high, names) in zip(parts, CRON_FIELDS, strict=True):
        values: set[int] = set()
        for item in text.split(","):
            body, _, step_text = item.partition("/")
            try:
                step = int(step_text) if step_text else 1
                if body == "*":
                    first, last = low, high
                elif "-" in body:
                    a, b = body.split("-", 1)
                    first, last = _cron_value(a, low, names), _cron_value(b, low, names)
                else:
                    first = _cron_value(body, low, names)
                    last = high if step_text else first
            except ValueError:
                first, last, step = -1, -1, 0
            if step < 1 or not low <= first <= last <= high:
                raise SpecError(f"{expression[:100]!r}: {item!r} is not a {what} ({low}-{high}, *, a-b, */n or "
                                "a list of them)", field="trigger.expression")
            values.update(range(first, last + 1, step))
        if what == "day of week" and 7 in values:
            values = (values - {7}) | {0}
        out.append(frozenset(values))
    return tuple(out)


def _cron_day(cron: tuple[frozenset[int], ...], day: date) -> bool:
    _, _, dom, months, dow = cron
    if day.month not in months:
        return False
    dom_any, dow_any = len(dom) == 31, len(dow) == 7
    in_dom, in_dow = day.day in dom, (day.weekday() + 1) % 7 in dow
    if dom_any or dow_any:
        return in_dom and in_dow
    return in_dom or in_dow  # both restricted: either one (as cron)


# -- next run ----------------------------------------------------------------------------------

def _months_between(a: date, b: date) -> int:
    return (b.year - a.year) * 12 + b.month - a.month


def _day_fires(trigger: Trigger, day: date, first: date) -> bool:
    """Whether the recurrence fires on `day` (a local date) at all; `first` is its start's local date."""
    if trigger.type == "cron":
        return _cron_day(trigger.cron, day)
    if day < first:
        return False
    if trigger.frequency == "day":
        return (day - first).days % trigger.interval == 0
    if trigger.frequency == "week":
        weeks = ((day - timedelta(days=day.weekday())) - (first - timedelta(days=first.weekday()))).days // 7
        return weeks % trigger.interval == 0 and day.weekday() in (trigger.week_days or (first.weekday(),))
    if trigger.frequency == "month":
        if _months_between(first, day) % trigger.interval:
            return False
        days = trigger.month_days or (first.day,)
        last = calendar.monthrange(day.year, day.month)[1]
        return day.day in days or (day.day == last and any(d > last for d in days))  # the 31st: a month's last day
    return True


def _times(trigger: Trigger, start_local: datetime) -> list[tuple[int, int]]:
    if trigger.type == "cron":
        return [(h, m) for h in sorted(trigger.cron[1]) for m in sorted(trigger.cron[0])]
    hours = trigger.hours or (start_local.hour,)
    minutes = trigger.minutes or (start_local.minute,)
    return [(h, m) for h in hours for m in minutes]


def next_run(trigger: Trigger, after: datetime) -> datetime | None:
    """The first time (naive UTC) strictly after `after` (naive UTC), not before the start, the trigger fires;
    None if it fires in none of the next HORIZON_DAYS days."""
    zone = _zone(trigger.time_zone)
    start_local = trigger.start_time.replace(tzinfo=UTC).astimezone(zone)
    after = max(after, trigger.start_time - timedelta(microseconds=1))

    def utc(local: datetime) -> datetime:
        return local.replace(tzinfo=zone).astimezone(UTC).replace(tzinfo=None)

    if trigger.type == "recurrence" and trigger.frequency in ("minute", "hour") and not trigger.minutes:
        step = timedelta(minutes=trigger.interval) if trigger.frequency == "minute" else \
            timedelta(hours=trigger.interval)
        periods = (after - trigger.start_time) // step + 1
        return trigger.start_time + periods * step
    if trigger.type == "recurrence" and trigger.frequency == "hour":  # at given minutes of every N-th hour
        first_hour = start_local.replace(minute=0, second=0, microsecond=0, tzinfo=None)
        hour = max(first_hour, after.replace(tzinfo=UTC).astimezone(zone).replace(
            minute=0, second=0, microsecond=0, tzinfo=None))
        for _ in range(trigger.interval + 2):
            hours = int((hour - first_hour).total_seconds() // 3600)
            offset = (-hours) % trigger.interval
            hour += timedelta(hours=offset)
            for minute in trigger.minutes:
                at = utc(hour.replace(minute=minute))
                if at > after:
                    return at
            hour += timedelta(hours=1)
        return None
    times = _times(trigger, start_local)
    day = after.replace(tzinfo=UTC).astimezone(zone).date()
    for _ in range(HORIZON_DAYS):
        if _day_fires(trigger, day, start_local.date()):
            for h, m in times:
                at = utc(datetime(day.year, day.month, day.day, h, m))
                if at > after:
                    return at
        day += timedelta(days=1)
    return None
