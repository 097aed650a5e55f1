"""Secrets Manager's rotation of a connection's secrets: `aws secretsmanager rotate-secret` on its token
secret or its refresh secret (or the rotation schedule) refreshes that connection now, through the same
lease, steps, outcomes, metrics and events as the scheduled refresh. Each step is idempotent, keyed by
Secrets Manager's ClientRequestToken, so a retried step resumes instead of repeating.

- createSecret: the refresh, under the lease (waiting while a refresh or login holds it). No second
  Webex call for a connection refreshed moments ago (a scheduled refresh that held the lease, say): the
  rotation keeps that token. A new access token goes into the rotation's AWSPENDING version of the token
  secret, never straight to AWSCURRENT. Refresh material Webex changed is stored current at once: a
  refresh token held only in a pending version could be lost.
- setSecret: nothing to do: Webex holds the grant, there is no other service to tell.
- testSecret: a new token in AWSPENDING is proved with Webex (`/people/me`) before it can become current.
- finishSecret: AWSCURRENT moves to the pending version only if it holds a newer token than AWSCURRENT,
  so a refresh after createSecret is never undone. Otherwise the AWSPENDING label is removed: Secrets
  Manager counts that as a finished rotation with AWSCURRENT as it was (Webex's same token within 24 h).

A failed step raises, so Secrets Manager keeps AWSCURRENT and reports the rotation failed; the refresh
itself has already recorded and reported its failure as any refresh does (`RotationsFailed` counts it).
"""

import time
from collections.abc import Callable
from dataclasses import dataclass

from webex_broker.adapters.secret_store import (
    PendingVersion,
    move_stage,
    rotation_state,
    version_document,
)
from webex_broker.core.errors import RotationFailed, WebexError
from webex_broker.core.observability import logger, metrics
from webex_broker.core.token_documents import fingerprint
from webex_broker.flows.broker import Broker
from webex_broker.flows.refresh import Refresher
from webex_broker.flows.refresh_report import Outcome

LEASE_POLL_SECONDS = 0.25
STEP_MARGIN_MS = 10_000  # a refresh's Webex call and writes, after waiting for the lease
SUCCEEDED = {Outcome.REFRESHED, Outcome.UNCHANGED, Outcome.HEALED}


@dataclass(frozen=True)
class RotationStep:
    """What Secrets Manager sends the rotation function, four times per rotation."""

    secret_id: str
    token: str
    step: str

    @classmethod
    def of(cls, event: dict) -> "RotationStep":
        fields = [event.get(key) for key in ("SecretId", "ClientRequestToken", "Step")]
        if not all(isinstance(value, str) and value for value in fields):
            raise RotationFailed("not a Secrets Manager rotation request")
        return cls(*fields)  # type: ignore[arg-type]


def rotate(
    broker: Broker,
    request: RotationStep,
    *,
    remaining_ms: Callable[[], int],
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    try:
        _rotate(broker, request, remaining_ms, sleep)
    except Exception:
        metrics.add_metric(name="RotationsFailed", unit="Count", value=1)
        logger.exception("Rotation step failed; AWSCURRENT is unchanged", extra={"step": request.step})
        raise


def _rotate(
    broker: Broker, request: RotationStep, remaining_ms: Callable[[], int], sleep: Callable[[float], None]
) -> None:
    described = rotation_state(request.secret_id)
    name = described["Name"]
    secret = broker.names.connection_of(name)
    if secret is None:
        raise RotationFailed("not a secret of this broker")
    kind, connection = secret
    stages = described.get("VersionIdsToStages", {}).get(request.token)
    if not described.get("RotationEnabled") or stages is None:
        raise RotationFailed("rotation is not enabled for this version")
    if "AWSCURRENT" in stages:
        return  # this rotation finished already
    if "AWSPENDING" not in stages:
        raise RotationFailed("the version is not pending rotation")
    with logger.append_context_keys(connection=connection, step=request.step, secret_kind=kind):
        pending = PendingVersion(name, request.token)
        current = _current_version(described)
        if request.step == "createSecret":
            _create(broker, connection, pending, remaining_ms, sleep)
        elif request.step == "testSecret" and kind == "tokens":
            _test(broker, pending, current)
        elif request.step == "finishSecret":
            _finish(broker, connection, kind, pending, current)
        elif request.step not in ("setSecret", "testSecret"):
            raise RotationFailed(f"unknown step {request.step!r}")


def _current_version(described: dict) -> str:
    return next(v for v, stages in described.get("VersionIdsToStages", {}).items() if "AWSCURRENT" in stages)


def _create(
    broker: Broker,
    connection: str,
    pending: PendingVersion,
    remaining_ms: Callable[[], int],
    sleep: Callable[[float], None],
) -> None:
    if version_document(pending.secret, pending.token, "AWSPENDING") is not None:
        return  # written by an earlier try of this step
    refresher = Refresher(broker)
    while True:
        outcome, _ = refresher.refresh_one(connection, force=True, remaining_ms=remaining_ms, rotation=pending)
        if outcome in SUCCEEDED:
            logger.info("Rotation refreshed the connection", extra={"outcome": str(outcome)})
            return
        if outcome != Outcome.SKIPPED or remaining_ms() < STEP_MARGIN_MS:
            raise RotationFailed(f"the refresh ended {outcome}")
        sleep(LEASE_POLL_SECONDS)  # a refresh or login of it holds the lease: it finishes in seconds


def _test(broker: Broker, pending: PendingVersion, current: str) -> None:
    """Only a token that would become current is asked of Webex; one equal to AWSCURRENT's already serves."""
    new = version_document(pending.secret, pending.token, "AWSPENDING")
    if new is None or new == version_document(pending.secret, current, "AWSCURRENT"):
        return
    try:
        broker.webex_client().people_me(new["access_token"])
    except WebexError as exc:
        raise RotationFailed(f"Webex refused the new access token ({exc.code})") from None


def _finish(broker: Broker, connection: str, kind: str, pending: PendingVersion, current: str) -> None:
    new = version_document(pending.secret, pending.token, "AWSPENDING")
    now = version_document(pending.secret, current, "AWSCURRENT")
    if kind == "tokens" and new is not None and now is not None and _newer(new, now):
        move_stage(pending.secret, "AWSCURRENT", to=pending.token, away_from=current)
        broker.connections.record_current_token(
            connection, was=fingerprint(now["access_token"]), now=fingerprint(new["access_token"])
        )
    else:
        move_stage(pending.secret, "AWSPENDING", to=None, away_from=pending.token)
    metrics.add_metric(name="Rotations", unit="Count", value=1)
    logger.info("Rotation finished")


def _newer(new: dict, current: dict) -> bool:
    """Webex's newer token expires no earlier (ISO 8601 UTC times compare as text). A refresh cannot
    write in between: createSecret's write holds off every other for the write floor."""
    return new["access_token"] != current["access_token"] and new["expires_at"] >= current["expires_at"]
