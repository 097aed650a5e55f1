"""Monthly cost per connection and per 1,000 connections, from the calls and durations measured in the
same run. Prices: us-east-1 list prices, no free tier except the Scheduler's (they are printed next
to the table; change them here)."""

PRICES = {
    "secret_month": 0.40,  # Secrets Manager, per secret per month
    "secrets_api_per_10k": 0.05,  # Secrets Manager, per 10,000 API calls
    "lambda_gb_s_arm64": 0.0000133334,
    "lambda_per_million": 0.20,
    "ddb_write_per_million": 1.25,  # on-demand write request units
    "ddb_read_per_million": 0.25,  # on-demand read request units
    "api_per_million": 1.00,  # API Gateway HTTP API
    "scheduler_free": 14_000_000,  # EventBridge Scheduler invocations per month at no charge
    "scheduler_per_million": 1.00,
    "put_events_per_million": 1.00,  # EventBridge custom events (only on reauth/recovery/expiry warnings)
    "kms_key_month": 1.00,  # each customer managed key: the token key and the broker key
    "kms_rotation_month": 1.00,  # each of a key's first two (yearly) rotations adds this, for good
    "metric_month": 0.30,  # CloudWatch, each custom metric (name and dimensions) published in the month
    "alarm_month": 0.10,  # CloudWatch, each standard-resolution alarm
    "dashboard_month": 3.00,  # CloudWatch, each dashboard beyond the account's first three (counted here)
    "kms_per_10k": 0.03,  # KMS requests: Secrets Manager asks a secret's key for every write and read
}

ASSUMPTIONS = {
    "secrets_per_connection": 2,  # <prefix>/tokens/<name> and <prefix>/refresh/<name>
    "stack_secrets": 1,  # the integration's client secret (when the stack creates it)
    "stack_keys": 2,  # TokenKey, BrokerKey
    "key_age_years": 1,  # the stack's first year: no rotation yet (see key_months for the years after)
    "replica_regions": 0,  # ReplicaRegions: each adds one replica secret per connection ($0.40 a month)
    "logins_per_month": 1 / 3,  # one login per connection per quarter
    "refreshes_per_month": 30.44 / 7,  # RefreshMaxAgeDays=7 beats 14-day tokens' 48 h window: weekly
    "runs_per_month": 4380,  # the refresher every 10 minutes (RefreshIntervalMinutes default)
    "webex_ms_per_call": 100,  # added to measured login durations (the simulator answers at once)
    "gsi_wru_per_reschedule": 2,  # ScheduleIndex is keyed by next_refresh_at: a move is delete + put
    # Each run counts the connections per status over StatusIndex (keys only): a Query reads ~100 bytes
    # an entry, billed by the 4 KB, eventually consistent at half a read unit; measured calls count 1 each.
    "status_index_bytes_per_connection": 100,
}

READS = {"GetItem", "Query", "Scan", "BatchGetItem"}
WRITES = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem"}
SECRETS = {
    "GetSecretValue",
    "PutSecretValue",
    "CreateSecret",
    "UpdateSecret",
    "DescribeSecret",
    "RestoreSecret",
    "TagResource",
    "RotateSecret",
}
# Every secret the broker reads or writes is under a customer managed key (token or broker key): one KMS
# request each (a data key to write, a decrypt to read).
KMS_CALLS = {"PutSecretValue", "CreateSecret", "UpdateSecret", "GetSecretValue"}


def _split(calls: dict[str, float]) -> dict[str, float]:
    return {
        "secrets_api": sum(n for op, n in calls.items() if op in SECRETS),
        "reads": sum(n for op, n in calls.items() if op in READS),
        "writes": sum(n for op, n in calls.items() if op in WRITES),
        "events": calls.get("PutEvents", 0),
        "kms": sum(n for op, n in calls.items() if op in KMS_CALLS),
    }


def model(
    *,
    per_refresh_calls: dict[str, float],
    refresh_ms: float,
    login_calls: dict[str, float],
    login_ms: float,
    login_webex_calls: int,
    run_calls: dict[str, float],
    run_ms: float,
    memory_mb: int,
    refresher_memory_mb: int,
    custom_metrics: int,
    alarms: int,
) -> dict:
    """Dollars per month: per connection (marginal) and per stack (fixed), by service. Logins run at
    memory_mb; refreshes and scheduled runs at the refresher's own MemorySize."""
    p, a = PRICES, ASSUMPTIONS
    gb, refresher_gb = memory_mb / 1024, refresher_memory_mb / 1024
    refresh, login, run = _split(per_refresh_calls), _split(login_calls), _split(run_calls)
    r, lg, runs = a["refreshes_per_month"], a["logins_per_month"], a["runs_per_month"]
    login_seconds = (login_ms + login_webex_calls * a["webex_ms_per_call"]) / 1000
    status_count_rru = a["status_index_bytes_per_connection"] / 4096 / 2  # per connection and run

    per_connection = {
        "Secrets Manager storage": (a["secrets_per_connection"] + a["replica_regions"]) * p["secret_month"],
        "Secrets Manager API": (r * refresh["secrets_api"] + lg * login["secrets_api"])
        * p["secrets_api_per_10k"]
        / 1e4,
        "Lambda": (
            (r * refresh_ms / 1000 * refresher_gb + lg * login_seconds * gb) * p["lambda_gb_s_arm64"]
            + lg * 2 * p["lambda_per_million"] / 1e6  # /authorize and /callback
        ),
        "DynamoDB on-demand": (
            (
                r * (refresh["writes"] + a["gsi_wru_per_reschedule"])
                + lg * (login["writes"] + a["gsi_wru_per_reschedule"])
            )
            * p["ddb_write_per_million"]
            / 1e6
            + (r * refresh["reads"] + lg * login["reads"] + runs * status_count_rru) * p["ddb_read_per_million"] / 1e6
        ),
        "API Gateway HTTP API": lg * 2 * p["api_per_million"] / 1e6,
        "EventBridge": (r * refresh["events"] + lg * login["events"]) * p["put_events_per_million"] / 1e6,
        "KMS": (r * refresh["kms"] + lg * login["kms"]) * p["kms_per_10k"] / 1e4,
    }
    fixed = {
        "Secrets Manager storage": a["stack_secrets"] * p["secret_month"],
        "Secrets Manager API": runs * run["secrets_api"] * p["secrets_api_per_10k"] / 1e4,
        "Lambda": runs * (run_ms / 1000 * refresher_gb * p["lambda_gb_s_arm64"] + p["lambda_per_million"] / 1e6),
        "DynamoDB on-demand": runs
        * (run["writes"] * p["ddb_write_per_million"] + run["reads"] * p["ddb_read_per_million"])
        / 1e6,
        "API Gateway HTTP API": 0.0,
        "EventBridge": max(0, runs - p["scheduler_free"]) * p["scheduler_per_million"] / 1e6
        + runs * run["events"] * p["put_events_per_million"] / 1e6,
        "KMS": a["stack_keys"] * key_month(a["key_age_years"]),
        "CloudWatch": custom_metrics * p["metric_month"] + alarms * p["alarm_month"] + p["dashboard_month"],
    }
    per_connection["CloudWatch"] = 0.0
    rows = {
        service: {
            "per_connection": per_connection[service],
            "fixed": fixed[service],
            "per_1000": 1000 * per_connection[service] + fixed[service],
        }
        for service in per_connection
    }
    total = {k: sum(row[k] for row in rows.values()) for k in ("per_connection", "fixed", "per_1000")}
    return {
        "rows": rows,
        "total": total,
        "per_connection_at_1000": total["per_1000"] / 1000,
        "inputs": {
            "per_refresh_calls": per_refresh_calls,
            "refresh_ms": refresh_ms,
            "login_calls": login_calls,
            "login_ms": login_ms,
            "login_webex_calls": login_webex_calls,
            "run_calls": run_calls,
            "run_ms": run_ms,
            "memory_mb": memory_mb,
            "refresher_memory_mb": refresher_memory_mb,
            "custom_metrics": custom_metrics,
            "alarms": alarms,
        },
        "keys_by_year": {year: a["stack_keys"] * key_month(year) for year in (1, 2, 3)},
        "prices": PRICES,
        "assumptions": ASSUMPTIONS,
    }


def key_month(age_years: int) -> float:
    """One key with yearly rotation: $1 a month, plus $1 for each of its first two rotations (KMS
    pricing), so $1 in its first year, $2 in its second and $3 from its third on."""
    return PRICES["kms_key_month"] + min(max(age_years - 1, 0), 2) * PRICES["kms_rotation_month"]
