"""Refresh throughput: N due connections, a Webex with fixed latency, the real Refresher.

Prints connections per second next to the bound min(concurrency / latency, write cap / writes per
refresh), the time per connection, and the AWS calls per refresh. AWS is moto in its own process
(bench/aws_server.py); Webex is the simulator with injected latency, minting a new access token on
every refresh (so every refresh writes, the expensive case).

    .venv/bin/python bench/refresh_throughput.py --sizes 1000 10000
"""

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from devstack.lambda_runtime import cold_start
from devstack.template import create_tables
from devstack.webex_simulator import WebexSimulator

ROOT = Path(__file__).resolve().parent.parent

CLIENT_ID, CLIENT_SECRET = "bench-client", "bench-secret"
PREFIX = "bench"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_aws() -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "aws_server.py"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process, url
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("moto server did not start")


def configure(aws_url: str, webex_url: str, *, concurrency: int, write_rate: float, run: int) -> None:
    os.environ.update(
        {
            "AWS_ENDPOINT_URL": aws_url,
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "us-east-1",
            "WEBEX_API_BASE_URL": webex_url,
            "STATE_TABLE": f"state-{run}",
            "CONNECTIONS_TABLE": f"connections-{run}",
            "SECRET_PREFIX": f"{PREFIX}{run}",
            "REFRESH_CONCURRENCY": str(concurrency),
            "SECRETS_WRITE_RATE": str(write_rate),
            "WEBEX_TIMEOUT_SECONDS": "10",
            "POWERTOOLS_LOG_LEVEL": "ERROR",
            "POWERTOOLS_METRICS_DISABLED": "true",
        }
    )


def _doc(document: dict) -> str:
    return json.dumps(document, sort_keys=True, separators=(",", ":"))


def seed(sim: WebexSimulator, size: int, run: int) -> None:
    """size connections, all due now, each with its own Webex grant and both secrets.

    The secrets hold the documents the broker writes, created in bulk by bench/aws_server.py (one
    request per 1,000 secrets rather than two moto calls each); the rows are the items the broker's
    own ConnectionsTable.record_login writes."""
    import requests

    from webex_broker.adapters import aws
    from webex_broker.adapters.connections import ConnectionsTable
    from webex_broker.adapters.secret_store import SecretNames
    from webex_broker.core.clock import utc_now
    from webex_broker.core.grants import Person, TokenGrant
    from webex_broker.core.token_documents import TokenRecord

    names = SecretNames(f"{PREFIX}{run}")
    table_name = f"connections-{run}"
    table = ConnectionsTable(table_name)
    now = utc_now()

    records = []
    for i in range(size):
        body = sim.issue_grant(CLIENT_ID, "alice@example.com", ["spark:people_read"])
        person = Person(
            id=f"person-{i}", email=f"user{i}@example.com", display_name=f"User {i}", org_id="org", type="person"
        )
        grant = TokenGrant(body["access_token"], now, body["refresh_token"], None, "Bearer", ("spark:people_read",))
        records.append(TokenRecord(person.email, person, grant, now))

    arns = []
    for start in range(0, size, 1000):
        chunk = records[start : start + 1000]
        secrets = []
        for record in chunk:
            secrets.append(
                {
                    "name": names.refresh_secret(record.connection),
                    "secret_string": _doc(record.refresh_material().document(updated_at=now)),
                }
            )
            secrets.append(
                {"name": names.token_secret(record.connection), "secret_string": _doc(record.consumer_document())}
            )
        response = requests.post(
            f"{os.environ['AWS_ENDPOINT_URL']}/_bench/secrets",
            json={"region": os.environ["AWS_DEFAULT_REGION"], "secrets": secrets},
            timeout=120,
        )
        response.raise_for_status()
        arns += response.json()["arns"][1::2]  # the consumer secret of each connection

    # The rows: the broker's record_login computes each UpdateItem; on a new row that is a plain put,
    # so the items are written 25 at a time with BatchWriteItem (moto parses a 17-attribute update
    # expression in ~10 ms, which made 10,000 rows take minutes).
    due = int(now.timestamp()) - 1
    items = _rows_from_record_login(table, records, arns, next_refresh_at=due)
    dynamodb = aws.client("dynamodb")
    # The first row goes through the real UpdateItem, and must come out as the computed item.
    first, at = records[0], int(records[0].updated_at.timestamp())
    table.claim(first.connection, person_id=first.person.id, email=first.person.email, now=at)
    table.acquire(first.connection, owner="seed", now=at, lease_seconds=60)
    table.record_login(
        first, owner="seed", consumer_secret_arn=arns[0], next_refresh_at=due, login_base_url="http://127.0.0.1"
    )
    stored = dynamodb.get_item(TableName=table_name, Key={"connection": items[0]["connection"]}, ConsistentRead=True)
    if aws.from_item(stored["Item"]) != aws.from_item(items[0]):
        raise RuntimeError("seeded rows would differ from what record_login writes")
    for start in range(1, len(items), 25):
        request = {table_name: [{"PutRequest": {"Item": item}} for item in items[start : start + 25]]}
        while request:
            request = dynamodb.batch_write_item(RequestItems=request).get("UnprocessedItems")


def _rows_from_record_login(table, records: list, arns: list[str], *, next_refresh_at: int) -> list[dict]:
    """Each row as the item record_login's UpdateItem (SET only, on a new row) would leave behind."""
    from webex_broker.adapters import aws

    captured = []

    class Capture:
        def update_item(self, **kwargs):
            captured.append(kwargs)
            return {}

    real_client = aws.client
    aws.client = lambda service, *args, **kwargs: Capture() if service == "dynamodb" else real_client(service)
    try:
        for record, arn in zip(records, arns, strict=True):
            table.record_login(
                record,
                owner="seed",
                consumer_secret_arn=arn,
                next_refresh_at=next_refresh_at,
                login_base_url="http://127.0.0.1",
            )
    finally:
        aws.client = real_client
    items = []
    for call in captured:
        expression = call["UpdateExpression"]
        sets = expression.partition("SET ")[2].split(" REMOVE ")[0].split(" ADD ")[0]
        if " ADD " in expression:
            raise RuntimeError(f"cannot seed from an ADD expression: {expression}")
        item = dict(call["Key"])
        for name, value in re.findall(r"(#\w+) = (?:if_not_exists\(#\w+, )?(:\w+)", sets):
            item[call["ExpressionAttributeNames"][name]] = call["ExpressionAttributeValues"][value]
        items.append(item)
    return items


def measure(size: int, *, latency: float, concurrency: int, write_rate: float, aws_url: str, run: int) -> dict:
    sim = WebexSimulator(same_token_window=0)  # a new token on every refresh: every refresh writes
    sim.register_client(CLIENT_ID, CLIENT_SECRET, ["http://127.0.0.1/callback"])
    with sim.serve() as server:
        configure(aws_url, server.url, concurrency=concurrency, write_rate=write_rate, run=run)
        cold_start()
        from webex_broker.adapters import aws

        create_tables(
            aws.client("dynamodb"), names={"StateTable": f"state-{run}", "ConnectionsTable": f"connections-{run}"}
        )
        secret_arn = aws.client("secretsmanager").create_secret(
            Name=f"bench-client-{run}",
            SecretString=json.dumps({"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}),
        )["ARN"]
        os.environ["CLIENT_SECRET_ARN"] = secret_arn
        seed(sim, size, run)

        calls = Counter()
        for service in ("dynamodb", "secretsmanager", "events"):
            aws.client(service).meta.events.register("before-call.*.*", lambda model, **_: calls.update([model.name]))
        sim.set_latency(latency, "access_token")
        from webex_broker.flows.refresh import Refresher

        refresher = Refresher()
        started = time.monotonic()
        report = refresher.run(remaining_ms=lambda: int((900 - (time.monotonic() - started)) * 1000))
        seconds = time.monotonic() - started
    refreshed = report.outcomes["refreshed"] + report.outcomes["unchanged"]
    writes_per_refresh = calls["PutSecretValue"] / max(refreshed, 1)
    bound = min(concurrency / latency, write_rate / max(writes_per_refresh, 1e-9))
    rate = refreshed / seconds
    return {
        "connections": size,
        "refreshed": refreshed,
        "failures": len(report.failures),
        "seconds": round(seconds, 2),
        "per_second": round(rate, 2),
        "bound_per_second": round(bound, 2),
        "ratio_to_bound": round(rate / bound, 3),
        "ms_per_connection": round(1000 * seconds / max(refreshed, 1), 2),
        "aws_calls_per_refresh": round(sum(calls.values()) / max(refreshed, 1), 2),
        "aws_calls": dict(sorted(calls.items())),
        "writes_per_refresh": round(writes_per_refresh, 2),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--latency", type=float, default=0.1, help="simulated Webex latency, seconds")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--write-rate", type=float, default=40.0)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)

    process, aws_url = start_aws()
    try:
        results = [
            measure(
                size,
                latency=args.latency,
                concurrency=args.concurrency,
                write_rate=args.write_rate,
                aws_url=aws_url,
                run=run,
            )
            for run, size in enumerate(args.sizes)
        ]
    finally:
        process.terminate()
        process.wait(timeout=10)
    print(
        f"Refresh throughput: Webex latency {args.latency * 1000:.0f} ms, concurrency {args.concurrency}, "
        f"write cap {args.write_rate:g}/s"
    )
    header = ("connections", "seconds", "conn/s", "bound", "ratio", "ms/conn", "AWS calls/refresh")
    print("{:>11} {:>8} {:>7} {:>6} {:>6} {:>8} {:>18}".format(*header))
    for r in results:
        print(
            f"{r['connections']:>11} {r['seconds']:>8} {r['per_second']:>7} {r['bound_per_second']:>6} "
            f"{r['ratio_to_bound']:>6} {r['ms_per_connection']:>8} {r['aws_calls_per_refresh']:>18}"
        )
    if len(results) > 1:
        flat = results[-1]["ms_per_connection"] / results[0]["ms_per_connection"]
        print(f"time per connection, largest vs smallest size: {flat:.3f}x")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0 if all(r["failures"] == 0 and r["refreshed"] == r["connections"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
