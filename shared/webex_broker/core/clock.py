"""Time as the broker keeps it: aware UTC datetimes in code, epoch seconds in DynamoDB, ISO 8601
with a Z in the secrets workloads read."""

from datetime import UTC, datetime


def utc_now() -> datetime:
    return datetime.now(UTC)


def epoch(moment: datetime | None) -> int | None:
    return int(moment.timestamp()) if moment else None


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
