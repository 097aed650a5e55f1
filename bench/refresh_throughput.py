"""Refresh throughput: N due connections, a Webex with fixed latency, the real Refresher, and beside
it the same work with no broker code (bench/baseline.py's refresh_many), in the same run.

Each size is seeded once. The baseline refreshes every connection first (16 at a time, writes paced
to the same cap), then the Refresher refreshes them all again with its clock moved past their next
refresh: the same AWS calls (4) and Webex call (1) per connection, on the same moto and simulator.

What it reports, per size and side: connections per second, and the CPU this process spent per
refresh. AWS is moto in its own process (bench/aws_server.py) and Webex the simulator in another,
so this process's CPU is the refresher's alone; the Refresher's per-refresh figure is also taken
per thread (time.thread_time around each refresh_one). From the CPU per refresh it predicts what a
Lambda function gets at a given MemorySize (MemorySize / 1769 of a vCPU), and it names the resource
that bound the run: the write cap, Webex latency x concurrency, or the emulator (moto's CPU).

    .venv/bin/python bench/refresh_throughput.py --sizes 1000 10000
"""

import argparse
import json
import multiprocessing
import os
import re
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

if __package__ in (None, ""):  # python bench/refresh_throughput.py
    sys.path[:0] = [str(Path(__file__).resolve().parent.parent), str(Path(__file__).resolve().parents[1] / "shared")]

from bench.common import CLIENT_ID, CLIENT_SECRET, NOT_ON_LAMBDA, ROOT, broker_env, lambda_rate

PREFIX = "bench"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SKIP_DAYS = 13  # the Refresher's clock, moved past the next refresh the baseline scheduled (12 days on)


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


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of another process so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _simulator(pipe) -> None:
    """The child: a Webex simulator minting a new access token on every refresh (so every refresh
    writes, the expensive case), taking orders over the pipe. waitress serves it, keeping connections
    open between requests as Webex does (werkzeug's server closes each one)."""
    import threading

    import waitress

    from devstack.webex_simulator import WebexSimulator

    sim = WebexSimulator(same_token_window=0)
    sim.register_client(CLIENT_ID, CLIENT_SECRET, ["http://127.0.0.1/callback"])
    server = waitress.create_server(sim.app, host="127.0.0.1", port=0, threads=32, connection_limit=256)
    threading.Thread(target=server.run, daemon=True).start()
    pipe.send(f"http://127.0.0.1:{server.effective_port}")
    while True:
        order, argument = pipe.recv()
        if order == "grants":
            pipe.send([sim.issue_grant(CLIENT_ID, "alice@example.com", ["spark:people_read"]) for _ in range(argument)])
        elif order == "latency":
            sim.set_latency(argument, "access_token")
            pipe.send(None)
        else:
            server.close()
            pipe.send(None)
            return


class SimulatorProcess:
    """The Webex simulator in its own process, so its CPU never counts as the refresher's."""

    def __init__(self):
        context = multiprocessing.get_context("spawn")
        self._pipe, child = context.Pipe()
        self._process = context.Process(target=_simulator, args=(child,), daemon=True)
        self._process.start()
        self.url = self._pipe.recv()

    def _ask(self, order: str, argument=None):
        self._pipe.send((order, argument))
        return self._pipe.recv()

    def grants(self, count: int) -> list[dict]:
        return self._ask("grants", count)

    def set_latency(self, seconds: float) -> None:
        self._ask("latency", seconds)

    def stop(self) -> None:
        self._ask("stop")
        self._process.join(timeout=10)


def configure(aws_url: str, webex_url: str, *, concurrency: int, write_rate: float, run: int) -> None:
    os.environ.update(
        broker_env(
            AWS_ENDPOINT_URL=aws_url,
            WEBEX_API_BASE_URL=webex_url,
            STATE_TABLE=f"state-{run}",
            CONNECTIONS_TABLE=f"connections-{run}",
            INVITATIONS_TABLE=f"invitations-{run}",
            SECRET_PREFIX=f"{PREFIX}{run}",
            REFRESH_CONCURRENCY=str(concurrency),
            SECRETS_WRITE_RATE=str(write_rate),
            WEBEX_TIMEOUT_SECONDS="10",
            POWERTOOLS_LOG_LEVEL="INFO",  # as deployed: the refresher logs at INFO
            POWERTOOLS_METRICS_DISABLED="true",
        )
    )


def _doc(document: dict) -> str:
    return json.dumps(document, sort_keys=True, separators=(",", ":"))


def seed(sim: SimulatorProcess, size: int, run: int) -> list[str]:
    """size connections, all due now, each with its own Webex grant and both secrets; returns their names.

    The secrets hold the documents the broker writes, created in bulk by bench/aws_server.py (one
    request per 1,000 secrets rather than two moto calls each); the rows are the items the broker's
    own ConnectionsTable.record_login writes."""
    import requests

    from webex_broker.adapters import aws
    from webex_broker.adapters.connections import ConnectionsTable
    from webex_broker.adapters.secret_store import SecretNames
    from webex_broker.core.clock import utc_now
    from webex_broker.core.grants import Person, TokenGrant
    from webex_broker.core.settings import load_settings
    from webex_broker.core.token_documents import TokenRecord

    names = SecretNames(f"{PREFIX}{run}")
    table_name = f"connections-{run}"
    table = ConnectionsTable(table_name)
    now = utc_now()

    records = []
    for i, body in enumerate(sim.grants(size)):
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
                {"name": names.token_secret(record.connection), "secret_string": _doc(record.token_document())}
            )
        response = requests.post(
            f"{os.environ['AWS_ENDPOINT_URL']}/_bench/secrets",
            json={"region": os.environ["AWS_DEFAULT_REGION"], "secrets": secrets},
            timeout=120,
        )
        response.raise_for_status()
        arns += response.json()["arns"][1::2]  # the token secret of each connection

    # The rows: the broker's record_login computes each UpdateItem; on a new row that is a plain put,
    # so the items are written 25 at a time with BatchWriteItem (moto parses a 17-attribute update
    # expression in ~10 ms, which made 10,000 rows take minutes).
    due = int(now.timestamp()) - 1
    # Rows as a stack whose token secrets already have its sharing: the steady state, no converging.
    converged = load_settings().sharing.fingerprint()
    items = _rows_from_record_login(table, records, arns, next_refresh_at=due, sharing=converged)
    dynamodb = aws.client("dynamodb")
    # The first row goes through the real UpdateItem, and must come out as the computed item.
    first, at = records[0], int(records[0].updated_at.timestamp())
    table.claim(first.connection, person_id=first.person.id, email=first.person.email, now=at)
    table.acquire(first.connection, owner="seed", now=at, lease_seconds=60)
    table.record_login(
        first,
        owner="seed",
        consumer_secret_arn=arns[0],
        next_refresh_at=due,
        login_base_url="http://127.0.0.1",
        sharing=converged,
    )
    stored = dynamodb.get_item(TableName=table_name, Key={"connection": items[0]["connection"]}, ConsistentRead=True)
    if aws.from_item(stored["Item"]) != aws.from_item(items[0]):
        raise RuntimeError("seeded rows would differ from what record_login writes")
    for start in range(1, len(items), 25):
        request = {table_name: [{"PutRequest": {"Item": item}} for item in items[start : start + 25]]}
        while request:
            request = dynamodb.batch_write_item(RequestItems=request).get("UnprocessedItems")
    return [record.connection for record in records]


def _rows_from_record_login(table, records: list, arns: list[str], *, next_refresh_at: int, sharing: str) -> list[dict]:
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
                sharing=sharing,
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


def _count_calls(clients) -> Counter:
    calls = Counter()
    for client in clients:
        client.meta.events.register("before-call.*.*", lambda model, **_: calls.update([model.name]))
    return calls


class Timed:
    """Wall time, this process's CPU and moto's CPU over one side's run."""

    def __init__(self, moto_pid: int):
        self._moto_pid = moto_pid

    def __enter__(self):
        self._cpu, self._moto = time.process_time(), process_cpu_seconds(self._moto_pid)
        self._wall = time.monotonic()
        return self

    def __exit__(self, *exc):
        self.seconds = time.monotonic() - self._wall
        self.cpu_seconds = time.process_time() - self._cpu
        self.moto_cpu_seconds = process_cpu_seconds(self._moto_pid) - self._moto


def _side(refreshed: int, timed: Timed, calls: Counter) -> dict:
    done = max(refreshed, 1)
    return {
        "refreshed": refreshed,
        "seconds": round(timed.seconds, 2),
        "per_second": round(refreshed / timed.seconds, 2),
        "ms_per_connection": round(1000 * timed.seconds / done, 2),
        "cpu_ms_per_refresh": round(1000 * timed.cpu_seconds / done, 2),
        "moto_core_share": round(timed.moto_cpu_seconds / timed.seconds, 2),
        "aws_calls": dict(sorted(calls.items())),
        "aws_calls_per_refresh": round(sum(calls.values()) / done, 2),
    }


def run_baseline(names: list[str], *, concurrency: int, write_rate: float, moto_pid: int) -> dict:
    from bench import baseline

    baseline.reset()
    calls = _count_calls(baseline.client(service) for service in ("dynamodb", "secretsmanager"))
    with Timed(moto_pid) as timed:
        refreshed = baseline.refresh_many(names, concurrency=concurrency, write_rate=write_rate)
    return _side(refreshed, timed, calls)


def run_broker(*, moto_pid: int) -> dict:
    from devstack.lambda_runtime import cold_start
    from webex_broker.adapters import aws
    from webex_broker.core.clock import utc_now
    from webex_broker.core.observability import logger
    from webex_broker.flows.refresh import Refresher

    cold_start()
    logger.registered_handler.setStream(open(os.devnull, "w"))  # still formatted at INFO, as deployed  # noqa: SIM115
    calls = _count_calls(aws.client(service) for service in ("dynamodb", "secretsmanager", "events"))
    refresher = Refresher(clock=lambda: utc_now() + timedelta(days=SKIP_DAYS))
    thread_cpu: list[float] = []
    refresh_one = refresher.one.refresh_one  # what the run calls for each connection

    def timed_refresh(*args, **kwargs):
        started = time.thread_time()
        try:
            return refresh_one(*args, **kwargs)
        finally:
            thread_cpu.append(time.thread_time() - started)

    refresher.one.refresh_one = timed_refresh
    with Timed(moto_pid) as timed:
        deadline = time.monotonic() + 900
        report = refresher.run(remaining_ms=lambda: int((deadline - time.monotonic()) * 1000))
    refreshed = report.outcomes["refreshed"] + report.outcomes["unchanged"]
    side = _side(refreshed, timed, calls)
    side["thread_cpu_ms_median"] = round(1000 * statistics.median(thread_cpu), 2) if thread_cpu else None
    side["failures"] = dict(Counter(report.failures.values()))
    return side


def bound_by(side: dict, *, write_cap: float, latency_bound: float) -> str:
    """Which resource limited a side's run: the one it came within 10 % of, or moto's one core."""
    if side["per_second"] >= 0.9 * write_cap:
        return "write cap"
    if side["per_second"] >= 0.9 * latency_bound:
        return "Webex latency x concurrency"
    if side["moto_core_share"] >= 0.8:
        return f"the emulator (moto at {side['moto_core_share']:.0%} of a core)"
    return "the benchmark host (neither cap reached, moto below 80 % of a core)"


def measure(size: int, *, latency: float, concurrency: int, write_rate: float, aws, run: int) -> dict:
    process, aws_url = aws
    sim = SimulatorProcess()
    try:
        configure(aws_url, sim.url, concurrency=concurrency, write_rate=write_rate, run=run)
        from devstack.lambda_runtime import cold_start
        from devstack.template import create_tables
        from webex_broker.adapters import aws as broker_aws

        cold_start()
        create_tables(
            broker_aws.client("dynamodb"),
            names={
                "StateTable": f"state-{run}",
                "ConnectionsTable": f"connections-{run}",
                "InvitationsTable": f"invitations-{run}",
            },
        )
        from webex_broker.adapters.client_credentials import CLIENT_ID_TAG

        os.environ["CLIENT_SECRET_ARN"] = broker_aws.client("secretsmanager").create_secret(
            Name=f"bench-client-{run}",
            SecretString=json.dumps({"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}),
            Tags=[{"Key": CLIENT_ID_TAG, "Value": CLIENT_ID}],
        )["ARN"]
        names = seed(sim, size, run)
        sim.set_latency(latency)
        baseline = run_baseline(names, concurrency=concurrency, write_rate=write_rate, moto_pid=process.pid)
        broker = run_broker(moto_pid=process.pid)
    finally:
        sim.stop()
    writes = broker["aws_calls"].get("PutSecretValue", 0) / max(broker["refreshed"], 1)
    write_cap = write_rate / max(writes, 1e-9)
    latency_bound = concurrency / latency
    return {
        "connections": size,
        "refreshed": broker["refreshed"],
        "failures": sum(broker["failures"].values()),
        "broker": broker,
        "baseline": baseline,
        "ratio_to_baseline": round(broker["per_second"] / baseline["per_second"], 3),
        "cpu_ratio_to_baseline": round(broker["cpu_ms_per_refresh"] / baseline["cpu_ms_per_refresh"], 3),
        "write_cap_per_second": round(write_cap, 2),
        "latency_bound_per_second": round(latency_bound, 2),
        "bound_broker": bound_by(broker, write_cap=write_cap, latency_bound=latency_bound),
        "bound_baseline": bound_by(baseline, write_cap=write_cap, latency_bound=latency_bound),
    }


def main(argv=None) -> int:
    sys.modules.update(dict.fromkeys(NOT_ON_LAMBDA))  # as on Lambda: botocore finds neither the CRT nor pyOpenSSL
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--latency", type=float, default=0.1, help="simulated Webex latency, seconds")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--write-rate", type=float, default=40.0)
    parser.add_argument("--memory", type=int, default=256, help="MemorySize to predict Lambda's throughput at")
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
                aws=(process, aws_url),
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
    header = ("connections", "broker/s", "base/s", "ratio", "CPU ms", "base CPU ms", "moto", "bound (broker)")
    print("{:>11} {:>8} {:>7} {:>6} {:>7} {:>11} {:>5}  {}".format(*header))
    for r in results:
        b, base = r["broker"], r["baseline"]
        print(
            f"{r['connections']:>11} {b['per_second']:>8} {base['per_second']:>7} {r['ratio_to_baseline']:>6} "
            f"{b['cpu_ms_per_refresh']:>7} {base['cpu_ms_per_refresh']:>11} {b['moto_core_share']:>5}  "
            f"{r['bound_broker']}"
        )
        print(
            f"{'':>11} Lambda at {args.memory} MB: {lambda_rate(b['cpu_ms_per_refresh'], args.memory):.1f} "
            f"refreshes/s from CPU (median per refresh in its thread: {b['thread_cpu_ms_median']} ms)"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0 if all(r["failures"] == 0 and r["refreshed"] == r["connections"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
