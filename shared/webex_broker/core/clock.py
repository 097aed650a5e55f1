"""Time as the broker keeps it: aware UTC datetimes in code, epoch seconds in DynamoDB, ISO 8601
with a Z in the secrets workloads read."""

from datetime import UTC, datetime
from typing import overload


def utc_now() -> datetime:
    return datetime.now(UTC)


@overload
def epoch(moment: datetime) -> int: ...
@overload
def epoch(moment: datetime | None) -> int | None: ...
def epoch(moment: datetime | None) -> int | None:
    """Epoch seconds of a moment; None stays None (an unknown expiry)."""
    return int(moment.timestamp()) if moment else None


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
