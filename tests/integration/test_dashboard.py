"""The CloudWatch dashboard in template.yaml shows what the broker emits: each metric it graphs is
written, by running the flows, under the same namespace and `service` dimension; each run counts the
connections by status; and `doctor` says where the dashboard is."""

import copy
import json

import pytest
import yaml

from devstack.lambda_runtime import LambdaContext
from devstack.template import TEMPLATE_VARIABLE, LocalResolver, load_template
from tests.support.refresh import emf_values, make_due
from webex_broker.core import observability
from webex_broker_admin.doctor import OK, WARN, _dashboard

RESOURCES = load_template()["Resources"]


def resolved(stack: str) -> LocalResolver:
    alarms = {f"{name}.Arn": f"arn:alarm:{name}" for name, r in RESOURCES.items() if r["Type"].endswith("::Alarm")}
    return LocalResolver(parameters={}, resources={**alarms, "Dashboard": "the-dashboard"}, stack_name=stack)


def dashboard(resolver: LocalResolver) -> dict:
    return json.loads(resolver.resolve(RESOURCES["Dashboard"]["Properties"]["DashboardBody"]))


def graphed(body: dict) -> set[tuple[str, str, frozenset]]:
    """(namespace, metric, dimensions) of every metric a widget of the dashboard graphs."""
    shown = set()
    for widget in body["widgets"]:
        for line in widget["properties"].get("metrics", []):
            namespace, name, *dims = [part for part in line if not isinstance(part, dict)]
            shown.add((namespace, name, frozenset(zip(dims[::2], dims[1::2], strict=True))))
    return shown


def emitted(output: str) -> set[tuple[str, str, frozenset]]:
    """(namespace, metric, dimensions) of every metric the EMF lines in `output` publish."""
    found = set()
    for line in output.splitlines():
        if '"_aws"' not in line:
            continue
        blob = json.loads(line)
        for directive in blob["_aws"]["CloudWatchMetrics"]:
            for dims in directive["Dimensions"]:
                dimensions = frozenset((d, blob[d]) for d in dims)
                found |= {(directive["Namespace"], m["Name"], dimensions) for m in directive["Metrics"]}
    return found


def without_status_count(tmp_path) -> str:
    """template.yaml with the refresher's role lacking the status count's permission."""
    template = copy.deepcopy(load_template())
    statements = template["Resources"]["RefresherFunction"]["Properties"]["Policies"][0]["Statement"]
    statements[:] = [s for s in statements if s["Sid"] != "CountConnectionsByStatus"]
    modified = tmp_path / "template.yaml"
    modified.write_text(yaml.safe_dump(template))
    return str(modified)


def test_every_metric_the_dashboard_graphs_is_emitted_with_its_namespace_and_service(
    broker, capsys, monkeypatch, tmp_path
):
    """Logins, a refusal, a run, an on-demand refresh and a run AWS refuses a call of: every metric the
    dashboard names comes out of the code exactly as the dashboard asks for it."""
    from refresh_connection import handler as refresh_connection

    env = load_template()["Globals"]["Function"]["Environment"]["Variables"]
    stack = resolved(observability.SERVICE)
    assert stack.resolve(env["POWERTOOLS_SERVICE_NAME"]) == observability.SERVICE, "the stack's name is the service"
    namespace = stack.resolve(env.get("POWERTOOLS_METRICS_NAMESPACE", "WebexTokenBroker"))  # the code's default
    assert namespace == observability.NAMESPACE

    assert broker.login()["statusCode"] == 200
    refused = broker.login("carol@partner.example.org", invite=broker.invite("reports", email="bob@example.com"))
    assert refused["statusCode"] == 403
    broker.refresh()
    event = broker.event("refresh_connection")
    event["pathParameters"] = {"name": "alice@example.com"}
    assert refresh_connection(event, LambdaContext())["statusCode"] == 200
    monkeypatch.setenv(TEMPLATE_VARIABLE, without_status_count(tmp_path))
    broker.refresh()

    shown = graphed(dashboard(stack))
    missing = shown - emitted(capsys.readouterr().out)
    assert shown
    assert missing == set(), "graphed but never emitted (or under another namespace or dimension)"


def test_each_run_counts_the_connections_by_status(broker, capsys):
    from webex_broker.adapters.connections import ConnectionsTable

    assert broker.login()["statusCode"] == 200
    assert broker.login("bob@example.com")["statusCode"] == 200
    broker.webex.revoke_grant(person_email="bob@example.com")
    make_due(broker, "bob@example.com")
    ConnectionsTable("ConnectionsTable").claim("carol@example.com", person_id="p-carol", email="c@x", now=0)
    capsys.readouterr()

    broker.refresh()

    assert broker.connection("#refresher"), "a row without a status, which no count includes"
    out = capsys.readouterr().out
    counts = {name: emf_values(out, name) for name in ("ConnectionsActive", "ConnectionsReauthRequired")}
    assert counts == {"ConnectionsActive": [1.0], "ConnectionsReauthRequired": [1.0]}
    assert emf_values(out, "ConnectionsPending") == [1.0], "a first login that never finished"


def test_a_count_aws_refuses_is_alarmed_and_the_run_still_finishes(broker, capsys, monkeypatch, tmp_path):
    assert broker.login()["statusCode"] == 200
    make_due(broker, "alice@example.com")
    monkeypatch.setenv(TEMPLATE_VARIABLE, without_status_count(tmp_path))
    capsys.readouterr()

    run = broker.refresh()

    assert (run["succeeded"], run["failed"]) == (1, 0)
    out = capsys.readouterr().out
    assert emf_values(out, "AwsAccessDenied") == [1.0]
    assert emf_values(out, "ConnectionsActive") == [], "no count is better than a wrong one"
    assert emf_values(out, "Refreshed") == [1.0]


def test_the_dashboard_url_is_an_output_naming_the_dashboard_in_the_stacks_region():
    template = load_template()
    url = resolved("broker-a").resolve(template["Outputs"]["DashboardUrl"]["Value"])
    name = resolved("broker-a").resolve(RESOURCES["Dashboard"]["Properties"]["DashboardName"])
    assert (
        url == "https://us-east-1.console.aws.amazon.com/cloudwatch/home?region=us-east-1#dashboards:name=the-dashboard"
    )
    assert name == "webex-token-broker-broker-a-us-east-1", "dashboards are global: the region keeps two apart"


@pytest.mark.parametrize("organization", ["", "o-abc123defg"])
def test_the_dashboard_shows_every_alarm_of_the_stack(organization):
    resolver = resolved("broker-a")
    resolver.values["ReaderOrganizationId"] = organization
    [panel] = [w for w in dashboard(resolver)["widgets"] if w["type"] == "alarm"]
    alarms = {
        f"arn:alarm:{name}"
        for name, r in RESOURCES.items()
        if r["Type"] == "AWS::CloudWatch::Alarm" and ("Condition" not in r or resolver.condition(r["Condition"]))
    }
    assert set(panel["properties"]["alarms"]) == alarms


def test_doctor_prints_the_dashboard_url_of_a_deployed_stack():
    url = "https://eu-west-1.console.aws.amazon.com/cloudwatch/home?region=eu-west-1#dashboards:name=d"
    assert (_dashboard({"DashboardUrl": url}).result, _dashboard({"DashboardUrl": url}).detail) == (OK, url)
    assert _dashboard({"AlarmTopicArn": "arn"}).result == WARN, "a stack deployed before the dashboard"
    assert "local" in _dashboard({}).detail
