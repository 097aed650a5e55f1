"""Warm overhead: per-request time of the real handlers, in-process, next to bench/baseline.py.

AWS is moto in-process (mock_aws), Webex is the simulator on loopback with no added latency, so what
is left is the code on each side. Requests alternate broker/baseline, so drift hits both alike. Every
AWS call is counted (a wrapper on botocore's BaseClient._make_api_call catches every client,
Powertools' own included) and so is every Webex call, on both sides, to show they do the same work.

Run by bench/run.py as `python -m bench.warm --json FILE` with stdout discarded: the handlers log a
JSON line per request to stdout, as on Lambda.
"""

import argparse
import copy
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from bench.common import (
    CALLBACK_URL,
    CLIENT_ID,
    CLIENT_SECRET,
    EVENTS,
    FUNCTIONS,
    SHARED,
    broker_env,
    median,
    percentile,
)

BROKER_PERSON, BASELINE_PERSON = "alice@example.com", "bob@example.com"


class Calls:
    """Counts AWS operations made by any boto3 client while switched on."""

    def __init__(self):
        from botocore.client import BaseClient

        self.counter: Counter = Counter()
        self.on = False
        original = BaseClient._make_api_call
        calls = self

        def counted(client, operation_name, api_params):
            if calls.on:
                calls.counter[operation_name] += 1
            return original(client, operation_name, api_params)

        BaseClient._make_api_call = counted

    def measure(self, action, times: int = 1) -> dict[str, float]:
        self.counter.clear()
        self.on = True
        try:
            for _ in range(times):
                action()
        finally:
            self.on = False
        return {op: n / times for op, n in sorted(self.counter.items())}


def event(name: str, *, query: dict | None = None, path_name: str | None = None) -> dict:
    body = copy.deepcopy(json.loads((EVENTS / f"{name}.json").read_text()))
    if query is not None:
        body["queryStringParameters"] = query
        body["rawQueryString"] = "&".join(f"{k}={v}" for k, v in query.items())
    if path_name is not None:
        body["pathParameters"] = {"name": path_name}
    return body


def consent(sim_url: str, location: str, person: str) -> dict:
    """The person on Webex's consent page says yes; returns the query Webex sends back to /callback."""
    import requests

    query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    answer = requests.post(
        f"{sim_url}/authorize/decision",
        data={**query, "person": person, "decision": "allow"},
        allow_redirects=False,
        timeout=5,
    )
    if answer.status_code != 302:
        raise RuntimeError(f"consent failed: {answer.status_code} {answer.text[:200]}")
    return {k: v[0] for k, v in parse_qs(urlsplit(answer.headers["Location"]).query).items()}


def run(requests_n: int, warmup: int, count_n: int) -> dict:
    import boto3
    from moto import mock_aws

    from devstack import rotation
    from devstack.lambda_runtime import LambdaContext, cold_start
    from devstack.template import create_tables
    from devstack.webex_simulator import WebexSimulator

    for key in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        os.environ.pop(key, None)
    os.environ.update(broker_env())
    for path in [str(SHARED), *(str(fn.code_dir) for fn in FUNCTIONS)]:
        sys.path.insert(0, path)

    sim = WebexSimulator(same_token_window=0)  # a new access token on every refresh: every refresh writes
    sim.register_client(CLIENT_ID, CLIENT_SECRET, [CALLBACK_URL])
    calls = Calls()
    results: dict = {}
    with sim.serve() as server, mock_aws():
        rotation.install(lambda arn, event: None)  # the rotation function's testSecret is its own Lambda's cost
        os.environ["WEBEX_API_BASE_URL"] = server.url
        create_tables(boto3.client("dynamodb"))
        from webex_broker.adapters.client_credentials import CLIENT_ID_TAG

        os.environ["CLIENT_SECRET_ARN"] = boto3.client("secretsmanager").create_secret(
            Name="bench-client",
            SecretString=json.dumps({"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}),
            Tags=[{"Key": CLIENT_ID_TAG, "Value": CLIENT_ID}],
        )["ARN"]
        cold_start()

        from authorize import handler as authorize_handler
        from bench import baseline
        from callback import handler as callback_handler
        from refresh_connection import handler as refresh_connection_handler
        from webex_broker.flows.refresh import Refresher

        baseline.reset()

        def webex_calls(action) -> dict[str, int]:
            before = Counter(sim.calls)
            action()
            return {k: v for k, v in sorted((Counter(sim.calls) - before).items())}

        def broker_login_query() -> dict:
            start = authorize_handler(event("authorize"), LambdaContext())
            return consent(server.url, start["headers"]["Location"], BROKER_PERSON)

        def baseline_login_query() -> dict:
            return consent(server.url, baseline.authorize(event("authorize"))["headers"]["Location"], BASELINE_PERSON)

        def broker_callback(query: dict) -> dict:
            response = callback_handler(event("callback", query=query), LambdaContext())
            if response["statusCode"] != 303:  # on to the result page
                raise RuntimeError(f"broker callback answered {response['statusCode']}")
            return response

        def baseline_callback(query: dict) -> dict:
            response = baseline.callback(event("callback", query=query))
            if response["statusCode"] != 303:
                raise RuntimeError(f"baseline callback answered {response['statusCode']}")
            return response

        # First calls after a cold start: the first /authorize reads the client secret, the first
        # /callback of a new connection creates its two secrets.
        first = {
            "broker_authorize": calls.measure(broker_login_query),
            "baseline_authorize": calls.measure(baseline_login_query),
        }
        q_broker, q_baseline = broker_login_query(), baseline_login_query()
        first["broker_callback"] = calls.measure(lambda: broker_callback(q_broker))
        first["baseline_callback"] = calls.measure(lambda: baseline_callback(q_baseline))
        results["first_login_calls"] = first

        def scenario(name: str, broker, base, *, prepare=None, check=None, before=None) -> None:
            """broker/base take one prepared input (or None); each is timed alone, outside its preparation
            and outside `before`, which runs ahead of every call (of both sides)."""
            before = before or (lambda: None)
            total = warmup + count_n + requests_n
            inputs_broker = prepare[0](total) if prepare else [None] * total
            inputs_base = prepare[1](total) if prepare else [None] * total
            for i in range(warmup):
                before()
                broker(inputs_broker[i])
                base(inputs_base[i])
            j = warmup
            before()
            aws_broker = calls.measure(lambda: broker(inputs_broker[j]))
            aws_base = calls.measure(lambda: base(inputs_base[j]))
            j += 1
            before()
            web_broker = webex_calls(lambda: broker(inputs_broker[j]))
            web_base = webex_calls(lambda: base(inputs_base[j]))
            j = warmup + count_n
            times_broker, times_base, answers = [], [], []
            for i in range(j, total):
                x, y = inputs_broker[i], inputs_base[i]
                before()
                t0 = time.perf_counter()
                answer = broker(x)
                t1 = time.perf_counter()
                base(y)
                t2 = time.perf_counter()
                times_broker.append((t1 - t0) * 1000)
                times_base.append((t2 - t1) * 1000)
                answers.append(answer)
            if check:
                for answer in answers:
                    check(answer)
            results[name] = {
                "requests": requests_n,
                "broker_ms": median(times_broker),
                "baseline_ms": median(times_base),
                "ratio": median(times_broker) / median(times_base),
                "broker_p90_ms": percentile(times_broker, 0.9),
                "baseline_p90_ms": percentile(times_base, 0.9),
                "aws_calls_broker": aws_broker,
                "aws_calls_baseline": aws_base,
                "webex_calls_broker": web_broker,
                "webex_calls_baseline": web_base,
                "same_calls": aws_broker == aws_base and web_broker == web_base,
            }

        def expect(status: int):
            def check(answer):
                if answer["statusCode"] != status:
                    raise RuntimeError(f"expected {status}, got {answer['statusCode']}: {answer.get('body', '')[:200]}")

            return check

        scenario(
            "authorize",
            lambda _: authorize_handler(event("authorize"), LambdaContext()),
            lambda _: baseline.authorize(event("authorize")),
            check=expect(302),
        )
        scenario(
            "callback",
            broker_callback,
            baseline_callback,
            prepare=(
                lambda n: [broker_login_query() for _ in range(n)],
                lambda n: [baseline_login_query() for _ in range(n)],
            ),
        )

        def refresh_check(answer):
            if answer[0].value != "refreshed":
                raise RuntimeError(f"refresh_one: {answer[0].value}")

        def forget_cooldown() -> None:
            """Each forced refresh comes 'a minute after' the previous one (the broker allows one a minute)."""
            boto3.client("dynamodb").update_item(
                TableName=os.environ["CONNECTIONS_TABLE"],
                Key={"connection": {"S": BROKER_PERSON}},
                UpdateExpression="REMOVE forced_at",
            )

        scenario(
            "refresh_one",
            lambda _: Refresher().refresh_one(BROKER_PERSON, force=True),
            lambda _: baseline.refresh_one(BASELINE_PERSON),
            check=refresh_check,
            before=forget_cooldown,
        )
        scenario(
            "refresh_connection",
            lambda _: refresh_connection_handler(event("refresh_connection", path_name=BROKER_PERSON), LambdaContext()),
            lambda _: baseline.refresh_connection(event("refresh_connection", path_name=BASELINE_PERSON)),
            check=expect(200),
            before=forget_cooldown,
        )
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--count", type=int, default=2, help="requests used for counting calls (not timed)")
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args(argv)
    results = run(args.requests, args.warmup, args.count)
    args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
