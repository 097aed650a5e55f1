"""Bringing a connection's secrets to what the stack says (token secrets: readers in other accounts,
replicas, the token key; refresh secrets: the broker key; both: rotation with the broker's rotation
function) when the stack changes: at a connection's
next refresh or login, or at once for every connection with `webex-broker converge`. The row's
fingerprint says whether there is anything to do, so a refresh costs no extra AWS call once a secret
has converged. Converging never stands in the way of a token: if AWS refuses a step, the refresh or
login still counts, the error is logged and counted, and the next refresh tries again.
"""

from webex_broker.adapters.secret_store import converge_sharing, seal
from webex_broker.core.connection import Connection, ConnectionStatus
from webex_broker.core.errors import AwsAccessDenied, AwsUnavailable, ReplicationFailed, StatementRefused
from webex_broker.core.observability import logger, metrics
from webex_broker.flows.broker import Broker


def converge(broker: Broker, connection: str, recorded: str) -> str | None:
    """The fingerprint to record on the row: the stack's, once the token secret has it; None when a
    step failed (the row keeps its old one, and the next refresh tries again)."""
    sharing = broker.settings.sharing
    wanted = sharing.fingerprint()
    if recorded == wanted:
        return wanted
    try:
        seal(broker.names.refresh_secret(connection), sharing.broker_key_id, sharing.rotation_function_arn)
        converge_sharing(broker.names.token_secret(connection), sharing)
    except AwsAccessDenied as exc:  # a role or key policy to fix: alarmed, the token still counts
        logger.error(
            "AWS refused a step of bringing the secrets to what the stack says",
            extra={"connection": connection, "action": exc.action, "resource": exc.resource},
        )
        metrics.add_metric(name="SharingNotApplied", unit="Count", value=1)
        return None
    except StatementRefused as exc:  # the other readers have theirs; this one needs an operator
        logger.error(
            "AWS refused a statement of the token secret's resource policy; the other readers keep theirs",
            extra={"connection": connection, "statement": exc.sid, "error": exc.code},
        )
        metrics.add_metric(name="ReaderStatementsRefused", unit="Count", value=1)
        return None
    except (AwsUnavailable, ReplicationFailed) as exc:
        detail = exc.reasons if isinstance(exc, ReplicationFailed) else exc.code
        logger.error(
            "Could not bring the secrets to what the stack says; the next refresh tries again",
            extra={"connection": connection, "error": detail},
        )
        metrics.add_metric(name="SharingNotApplied", unit="Count", value=1)
        return None
    logger.info("Secrets brought to what the stack says", extra={"connection": connection})
    return wanted


def converge_all(broker: Broker, names: list[str] | None = None) -> dict[str, str]:
    """Every connection with a token secret (or those of `names`), now: name → "converged",
    "unchanged", "failed", or "missing" for a name without a row."""
    wanted = broker.settings.sharing.fingerprint()
    rows: dict[str, Connection | None]
    if names is None:
        rows = {row.name: row for row in broker.connections.all()}
    else:
        rows = {name: broker.connections.get(name) for name in names}
    results = {}
    for name, row in rows.items():
        if row is None:
            results[name] = "missing"
        elif row.status != ConnectionStatus.PENDING:
            results[name] = _converge_row(broker, row, wanted)
    return results


def out_of_date(rows: list[Connection], wanted: str) -> list[str]:
    """Connections whose token secret has not yet been brought to the stack's sharing."""
    return sorted(row.name for row in rows if row.status != ConnectionStatus.PENDING and row.sharing != wanted)


def _converge_row(broker: Broker, row: Connection, wanted: str) -> str:
    if row.sharing == wanted:
        return "unchanged"
    if converge(broker, row.name, row.sharing) is None:
        return "failed"
    broker.connections.record_sharing(row.name, wanted)
    return "converged"
