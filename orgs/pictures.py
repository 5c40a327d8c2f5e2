"""The dashboard's pictures as geometry: pure functions, no queries.

Each function takes numbers a selector already counted and returns a frozen
dataclass of coordinates and labels; the ``orgs/_picture_*.html`` templates
draw them as inline SVG. Nothing here renders markup, so no user text is
ever marked safe, and the same numbers feed the SVG's ``aria-label`` and the
table or legend beside it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

# Month names fixed in English: the console's one language, and strftime's
# %b would follow the server's locale.
MONTHS = (
    "Jan",
    "Feb",
    "Mar",
    "Apr",
    "May",
    "Jun",
    "Jul",
    "Aug",
    "Sep",
    "Oct",
    "Nov",
    "Dec",
)

NO_ORGS = "No orgs yet"


def day_label(day: date) -> str:
    """28 Nov."""
    return f"{day.day} {MONTHS[day.month - 1]}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _percentages(counts: Sequence[int]) -> list[int]:
    """Whole percentages that add up to exactly 100 (largest remainder), or
    all zeros when there is nothing to share."""
    total = sum(counts)
    if total == 0:
        return [0] * len(counts)
    exact = [100 * n / total for n in counts]
    shares = [math.floor(x) for x in exact]
    by_remainder = sorted(
        range(len(counts)),
        key=lambda i: (exact[i] - shares[i], counts[i]),
        reverse=True,
    )
    for i in by_remainder[: 100 - sum(shares)]:
        shares[i] += 1
    return shares


# --- orgs by status: one horizontal stacked bar -----------------------------


@dataclass(frozen=True)
class BarSegment:
    """One status in the bar (and in its legend)."""

    status: str
    label: str
    count: int
    percent: int
    x: float
    width: float
    # Wide enough to print the count inside the segment.
    shows_count: bool
    text_x: float

    @property
    def percent_text(self) -> str:
        # 1 org of 1,000 rounds to 0%, which would read as none.
        return "under 1%" if self.count and not self.percent else f"{self.percent}%"

    @property
    def title(self) -> str:
        return f"{self.label}: {_plural(self.count, 'org')} ({self.percent_text})"


@dataclass(frozen=True)
class StatusBar:
    width: int
    height: int
    total: int
    # Every status in order, zeros included: the legend.
    items: tuple[BarSegment, ...]
    aria_label: str
    empty_text: str = NO_ORGS

    @property
    def segments(self) -> tuple[BarSegment, ...]:
        """The statuses that have orgs: the rectangles drawn."""
        return tuple(item for item in self.items if item.count)

    @property
    def is_empty(self) -> bool:
        return self.total == 0

    @property
    def text_y(self) -> float:
        return self.height / 2

    @property
    def center_x(self) -> float:
        return self.width / 2


def status_bar(
    counts: Sequence[tuple[str, str, int]], *, width: int = 480, height: int = 32
) -> StatusBar:
    """The bar of orgs by status from ``(status, label, count)`` triples, in
    the order the legend lists them."""
    total = sum(n for _, _, n in counts)
    percents = _percentages([n for _, _, n in counts])
    items, done = [], 0
    for (status, label, n), percent in zip(counts, percents, strict=True):
        # Edges from the running total, so the segments tile the bar exactly.
        x = round(width * done / total, 2) if total else 0.0
        done += n
        end = round(width * done / total, 2) if total else 0.0
        items.append(
            BarSegment(
                status=status,
                label=label,
                count=n,
                percent=percent,
                x=x,
                width=round(end - x, 2),
                shows_count=n > 0 and end - x >= 8 * len(str(n)) + 12,
                text_x=round((x + end) / 2, 2),
            )
        )
    if total:
        parts = ", ".join(f"{n} {label}" for _, label, n in counts if n)
        aria_label = f"Orgs by status, {total} in all: {parts}"
    else:
        aria_label = NO_ORGS
    return StatusBar(
        width=width,
        height=height,
        total=total,
        items=tuple(items),
        aria_label=aria_label,
    )


# --- failures per day: a 30-day line ----------------------------------------


@dataclass(frozen=True)
class DayPoint:
    day: date
    count: int
    x: float
    y: float

    @property
    def label(self) -> str:
        return day_label(self.day)

    @property
    def title(self) -> str:
        return f"{self.label}: {_plural(self.count, 'failure')}"


@dataclass(frozen=True)
class Tick:
    label: str
    x: float
    y: float
    anchor: str = "middle"  # SVG text-anchor


@dataclass(frozen=True)
class FailureLine:
    width: int
    height: int
    # The plot area inside the axes.
    left: float
    top: float
    right: float
    bottom: float
    points: tuple[DayPoint, ...]
    y_ticks: tuple[Tick, ...]
    x_ticks: tuple[Tick, ...]
    total: int
    peak: DayPoint | None
    aria_label: str

    @property
    def days(self) -> int:
        return len(self.points)

    @property
    def polyline(self) -> str:
        """The SVG ``points`` attribute of the line."""
        return " ".join(f"{p.x},{p.y}" for p in self.points)

    @property
    def area(self) -> str:
        """The line closed down to the x axis, for the shading under it."""
        if not self.points:
            return ""
        first, last = self.points[0], self.points[-1]
        return f"{first.x},{self.bottom} {self.polyline} {last.x},{self.bottom}"

    @property
    def y_title_x(self) -> float:
        return 14.0

    @property
    def y_title_y(self) -> float:
        return round((self.top + self.bottom) / 2, 2)


def _y_step(peak: int, most_ticks: int = 4) -> int:
    """A round step (1, 2, 5, 10, 20, …) giving at most ``most_ticks``
    steps up to the peak."""
    if peak <= most_ticks:
        return 1
    raw = peak / most_ticks
    magnitude = 10 ** math.floor(math.log10(raw))
    for multiple in (1, 2, 5, 10):
        if multiple * magnitude >= raw:
            return multiple * magnitude
    return 10 * magnitude  # pragma: no cover - the loop always returns


def failure_line(
    daily: Sequence[tuple[date, int]],
    *,
    width: int = 480,
    height: int = 200,
) -> FailureLine:
    """The line of failures per day from ``(day, count)`` pairs, oldest
    first, one per day (days without failures count 0)."""
    left, right, top, bottom = 44.0, float(width - 20), 12.0, float(height - 32)
    days = len(daily)
    total = sum(n for _, n in daily)
    peak_count = max((n for _, n in daily), default=0)
    step = _y_step(peak_count)
    y_max = step * math.ceil(peak_count / step) if peak_count else 1
    span = (right - left) / (days - 1) if days > 1 else 0.0

    def y_of(n: int) -> float:
        return round(bottom - (bottom - top) * n / y_max, 2)

    points = tuple(
        DayPoint(day=day, count=n, x=round(left + i * span, 2), y=y_of(n))
        for i, (day, n) in enumerate(daily)
    )
    y_ticks = tuple(
        Tick(label=str(v), x=left - 8, y=y_of(v), anchor="end")
        for v in range(0, y_max + 1, step)
    )
    # A date every week, counted back from today so today is always labelled.
    x_ticks = tuple(
        Tick(
            label=p.label,
            x=p.x,
            y=bottom + 20,
            anchor="end" if i == days - 1 else "middle",
        )
        for i, p in enumerate(points)
        if (days - 1 - i) % 7 == 0
    )
    return FailureLine(
        width=width,
        height=height,
        left=left,
        top=top,
        right=right,
        bottom=bottom,
        points=points,
        y_ticks=y_ticks,
        x_ticks=x_ticks,
        total=total,
        peak=peak_of(points),
        aria_label=failure_summary(points),
    )


def peak_of(points: Sequence[DayPoint]) -> DayPoint | None:
    """The day with the most failures; ties go to the most recent day, the
    one a person can still do something about. None without failures."""
    peak = max(reversed(points), key=lambda p: p.count, default=None)
    return peak if peak is not None and peak.count else None


def failure_summary(points: Sequence[DayPoint]) -> str:
    """'12 failures in the last 30 days, most on 28 Nov: 5'."""
    period = f"in the last {len(points)} days"
    peak = peak_of(points)
    if peak is None:
        return f"No failures {period}"
    total = sum(p.count for p in points)
    return f"{_plural(total, 'failure')} {period}, most on {peak.label}: {peak.count}"
