"""`make run`: the whole broker on one machine, in the foreground.

Embedded AWS (a moto server on loopback, whose RotateSecret runs the local rotation function) unless
AWS_ENDPOINT_URL is set, the Webex simulator unless WEBEX_BASE_URL is set, a local API Gateway in
front of the template's real handlers, and the refresher on a local schedule. Everything lives in
memory and is gone when it stops.
"""

import faulthandler
import json
import logging
import os
import secrets
import signal
import sys
import threading
import time
from dataclasses import dataclass, field

import boto3
from werkzeug.serving import WSGIRequestHandler, make_server

from devstack import aws_fidelity, function_roles, rotation
from devstack.gateway import LocalGateway, routes_from
from devstack.lambda_runtime import local_functions
from devstack.template import (
    LocalResolver,
    create_client_secret,
    create_key,
    create_tables,
    function_environment,
    table_definitions,
)
from devstack.webex_simulator import DEFAULT_PEOPLE, WebexSimulator, webex_id
from webex_broker.core.settings import DEVELOPMENT_WEBEX_URL, WRITE_FLOOR
from webex_broker_admin.local_state import VARIABLE, state_path_for

STACK_NAME = "webex-token-broker-local"
DEMO_CONNECTION = "demo"
DEMO_USES = 100


LOCAL_CLIENT_ID = "local-integration"
# `make run` takes the stack's sharing parameters from the environment variables the functions get.
SHARING_PARAMETERS = {
    "READER_ACCOUNT_IDS": "ReaderAccountIds",
    "READER_ORGANIZATION_ID": "ReaderOrganizationId",
    "REPLICA_REGIONS": "ReplicaRegions",
}
LOCAL_REGION = "us-east-1"
# As on AWS, each function signs as its own role, on the stack's role path the broker key trusts, and the
# operator (the CLI, the tests) is an account administrator who must not be able to decrypt what that key
# seals. The runner sets the stack up as one more role on that path (the tests play break-glass with it).
FUNCTIONS_CREDENTIALS = ("local-functions", "local-functions")
OPERATOR_CREDENTIALS = ("local", "local")

# With spark:applications_token in WEBEX_SCOPES, the simulator also has a Service App, authorized by
# the first org's Full Admin and not by the second's, so both answers can be tried locally.
APPLICATIONS_TOKEN_SCOPE = "spark:applications_token"
DEMO_APP_ID = webex_id("APPLICATION", "8d0c3f5e-2a71-4b96-a4e8-1f6b9c7d2e50")
DEMO_APP_CLIENT_ID = "C1oca1-service-app"
DEMO_APP_CLIENT_SECRET = "local-service-app-secret"  # a simulator's, like the README says; override with the env var
DEMO_APP_SCOPES = ["spark:people_read", "spark-admin:people_read"]
AUTHORIZED_ORG, UNAUTHORIZED_ORG = dict.fromkeys(p.org_id for p in DEFAULT_PEOPLE)


@dataclass
class LocalConfig:
    """What `make run` reads from the environment; every value has an embedded default."""

    broker_port: int = 3000
    host: str = "127.0.0.1"
    refresh_interval: float = 60.0
    aws_endpoint_url: str = ""
    webex_base_url: str = ""
    webex_client_id: str = ""
    webex_client_secret: str = ""
    webex_scopes: str = ""
    sharing: dict = field(default_factory=dict)  # template parameters: readers in other accounts, replica regions
    support_contact: str = ""  # the stack's SupportContact: whom the pages name
    service_app_client_secret: str = DEMO_APP_CLIENT_SECRET
    sim_access_token_seconds: int = 600
    sim_same_token_seconds: int = 120
    sim_refresh_token_seconds: int = 7_776_000
    overrides: dict = field(default_factory=dict)

    @classmethod
    def from_env(cls, env=os.environ) -> "LocalConfig":
        return cls(
            broker_port=int(env.get("BROKER_PORT", "3000")),
            refresh_interval=float(env.get("REFRESH_INTERVAL_SECONDS", "60")),
            aws_endpoint_url=env.get("AWS_ENDPOINT_URL", ""),
            webex_base_url=env.get("WEBEX_BASE_URL", "").rstrip("/"),
            webex_client_id=env.get("WEBEX_CLIENT_ID", ""),
            webex_client_secret=env.get("WEBEX_CLIENT_SECRET", ""),
            webex_scopes=env.get("WEBEX_SCOPES", ""),
            service_app_client_secret=env.get("WEBEX_SERVICE_APP_CLIENT_SECRET", DEMO_APP_CLIENT_SECRET),
            sharing={
                parameter: env[variable] for variable, parameter in SHARING_PARAMETERS.items() if env.get(variable)
            },
            support_contact=env.get("SUPPORT_CONTACT", ""),
            sim_access_token_seconds=int(env.get("WEBEX_SIM_ACCESS_TOKEN_SECONDS", "600")),
            sim_same_token_seconds=int(env.get("WEBEX_SIM_SAME_TOKEN_SECONDS", "120")),
            sim_refresh_token_seconds=int(env.get("WEBEX_SIM_REFRESH_TOKEN_SECONDS", "7776000")),
        )


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args, **kwargs) -> None:
        """The gateway prints its own lines, without query strings (they carry codes and state)."""


class _Server:
    def __init__(self, app, host: str, port: int):
        self.httpd = make_server(host, port, app, threaded=True, request_handler=_QuietHandler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.httpd.server_port

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class LocalBroker:
    """Starts and stops the pieces; usable in-process by tests as well as by `make run`."""

    def __init__(self, config: LocalConfig, *, out=print):
        self.config = config
        self._out = out
        self._stops = []
        self._stopped = threading.Event()
        self.state_file = state_path_for(os.getpid())  # where `webex-broker` finds this stack
        self.simulator: WebexSimulator | None = None
        self.aws_endpoint = ""
        self.webex_url = ""
        self.login_url = ""
        self.base_url = ""
        self._function_env_names: list[str] = []
        self._function_names: dict = {}  # FunctionName (where the template gives one) → its local function

    def start(self) -> "LocalBroker":
        self._check_real_webex()
        self._start_aws()
        app = LocalGateway([], credentials=OPERATOR_CREDENTIALS, on_request=self._log_request)
        gateway = _Server(app, self.config.host, self.config.broker_port)
        self._stops.append(gateway.stop)
        self.base_url = f"http://{self.config.host}:{gateway.port}"
        client_id, client_secret = self._start_webex(self.base_url)
        functions = self._configure_functions(client_id, client_secret)
        app.routes = routes_from(functions)
        app.functions = {function.logical_id: function for function in functions}
        app.environment = {name: os.environ[name] for name in self._function_env_names}
        if not self.config.aws_endpoint_url:
            rotation.install(self._rotation_functions(self._function_names))
        self.login_url = self._demo_invitation()
        self._write_state_file()
        self._start_refresher([f for f in functions if f.events("ScheduleV2")])
        return self

    @staticmethod
    def _rotation_functions(functions) -> rotation.Invoke:
        """The embedded AWS's RotateSecret invokes the local function the rotation ARN names, as AWS
        invokes the deployed one."""

        def invoke(arn: str, event: dict) -> object:
            return functions[arn.rsplit(":", 1)[-1]].invoke(event)

        return invoke

    def _demo_invitation(self) -> str:
        """A link that works at once: an invitation for the connection `demo`, not bound to a person.
        The first person to finish it owns `demo`; anyone else is refused, as on a deployed stack."""
        from webex_broker.adapters.invitations import invitation_link
        from webex_broker.flows.broker import current

        _, token = current().invitations.create(
            DEMO_CONNECTION, email=None, ttl_seconds=7 * 86400, max_uses=DEMO_USES, now=int(time.time())
        )
        return invitation_link(self.base_url, token)

    def _write_state_file(self) -> None:
        """Where `webex-broker` finds this stack: endpoints, local credentials, the functions' environment."""
        state = {
            "pid": os.getpid(),
            "broker_url": self.base_url,
            "webex_url": self.webex_url,
            "aws_endpoint": self.aws_endpoint,
            "environment": {k: os.environ[k] for k in self._function_env_names},
            "aws": {
                "endpoint_url": self.aws_endpoint,
                "region_name": os.environ["AWS_DEFAULT_REGION"],
                "aws_access_key_id": OPERATOR_CREDENTIALS[0],
                "aws_secret_access_key": OPERATOR_CREDENTIALS[1],
            },
        }
        path = self.state_file
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.write_text(json.dumps(state, indent=2))
        path.chmod(0o600)
        self._stops.insert(0, lambda: path.unlink(missing_ok=True))

    def stop(self) -> None:
        self._stopped.set()
        for stop in reversed(self._stops):
            stop()
        self._stops.clear()

    def _check_real_webex(self) -> None:
        if self.config.webex_base_url and not (self.config.webex_client_id and self.config.webex_client_secret):
            raise SystemExit("WEBEX_BASE_URL needs WEBEX_CLIENT_ID and WEBEX_CLIENT_SECRET of your integration.")

    def _start_aws(self) -> None:
        os.environ["AWS_DEFAULT_REGION"] = os.environ.get("AWS_DEFAULT_REGION", LOCAL_REGION)
        os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"] = FUNCTIONS_CREDENTIALS
        if self.config.aws_endpoint_url:
            self.aws_endpoint = self.config.aws_endpoint_url
        else:
            from moto.server import ThreadedMotoServer

            aws_fidelity.apply()
            function_roles.register_setup_role(FUNCTIONS_CREDENTIALS[0], STACK_NAME, f"{STACK_NAME}-functions")
            function_roles.install(STACK_NAME)
            server = ThreadedMotoServer(ip_address=self.config.host, port=0, verbose=False)
            server.start()
            self._stops.append(server.stop)
            host, port = server.get_host_and_port()
            self.aws_endpoint = f"http://{host}:{port}"
        os.environ["AWS_ENDPOINT_URL"] = self.aws_endpoint

    def _start_webex(self, broker_base: str) -> tuple[str, str]:
        if self.config.webex_base_url:
            self.webex_url = self.config.webex_base_url
            return self.config.webex_client_id, self.config.webex_client_secret
        client_id = self.config.webex_client_id or LOCAL_CLIENT_ID
        client_secret = self.config.webex_client_secret or secrets.token_urlsafe(24)
        sim = WebexSimulator(
            access_token_ttl=self.config.sim_access_token_seconds,
            service_app_access_token_ttl=self.config.sim_access_token_seconds,
            refresh_token_ttl=self.config.sim_refresh_token_seconds,
            same_token_window=self.config.sim_same_token_seconds,
        )
        sim.register_client(client_id, client_secret, [f"{broker_base}/callback"])
        if self.service_apps_enabled:
            sim.register_service_app(
                DEMO_APP_ID, DEMO_APP_CLIENT_ID, self.config.service_app_client_secret, DEMO_APP_SCOPES
            )
            sim.authorize_service_app(DEMO_APP_ID, AUTHORIZED_ORG)
        server = sim.serve(self.config.host, 0)
        self._stops.append(server.shutdown)
        self.simulator = sim
        self.webex_url = server.url
        return client_id, client_secret

    @property
    def service_apps_enabled(self) -> bool:
        return APPLICATIONS_TOKEN_SCOPE in self.config.webex_scopes.split()

    def _configure_functions(self, client_id: str, client_secret: str):
        """Tables and client secret from the template's own definitions; env from its Globals."""
        from webex_broker.adapters.client_credentials import ClientCredentials, store_client_credentials

        names = {name: f"{STACK_NAME}-{name.removesuffix('Table').lower()}" for name in table_definitions()}
        if not self.config.aws_endpoint_url:
            # As CloudFormation names a new stack's table, each embedded AWS (gone at exit) gets its own
            # invitations table: a link from an earlier run then says it belongs to another broker.
            names["InvitationsTable"] += f"-{secrets.token_hex(4)}"
        tables = create_tables(boto3.client("dynamodb"), names=names)
        parameters = {
            "WebexApiBaseUrl": self.webex_url,
            # Loopback has no API Gateway domain: the callback URL comes from configuration, as on AWS.
            "PublicBaseUrl": self.base_url,
            # The policy (what is at risk, when is the last safe run) follows the local schedule.
            "RefreshIntervalMinutes": str(self.config.refresh_interval / 60),
        }
        if self.config.webex_scopes:
            parameters["WebexScopes"] = self.config.webex_scopes
        parameters.update(self.config.sharing)
        if self.config.support_contact:
            parameters["SupportContact"] = self.config.support_contact
        roles = function_roles.arn_values(STACK_NAME)
        resolver = LocalResolver(parameters=parameters, resources=tables | roles, stack_name=STACK_NAME)
        for key in ("TokenKey", "BrokerKey"):
            resolver.values[key] = create_key(boto3.client("kms"), resolver, key)
        resolver.values["ClientSecret"] = create_client_secret(boto3.client("secretsmanager"), resolver)
        # What `webex-broker set-credentials` has the admin function do after a real deploy.
        credentials = ClientCredentials(client_id, client_secret)
        store_client_credentials(resolver.values["ClientSecret"], credentials, key=resolver.values["BrokerKey"])
        log_level = os.environ.get("POWERTOOLS_LOG_LEVEL", "WARNING")  # the handlers' JSON logs: quiet by default
        # The simulator (or WEBEX_BASE_URL) is no Webex cloud: the development setting, which no stack has.
        # Simulated tokens live minutes: no write floor unless asked for (AWS's is 600 s).
        environment = {
            **function_environment(resolver),
            DEVELOPMENT_WEBEX_URL: "true",
            WRITE_FLOOR: os.environ.get(WRITE_FLOOR, "0"),
        }
        self._function_env_names = list(environment)
        os.environ.update(environment)
        os.environ["POWERTOOLS_LOG_LEVEL"] = log_level
        os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")  # EMF lines are for CloudWatch, not a terminal
        functions = local_functions()
        self._function_names = {
            resolver.resolve(f.properties["FunctionName"]): f for f in functions if "FunctionName" in f.properties
        }
        return functions

    def _start_refresher(self, scheduled) -> None:
        def loop():
            while not self._stopped.wait(self.config.refresh_interval):
                for function in scheduled:
                    try:
                        result = function.invoke({"source": "local-schedule"})
                    except Exception as exc:  # a failed run is reported and the schedule goes on
                        self._out(f"Refresher failed: {type(exc).__name__}")
                        continue
                    if result.get("refreshed") or result.get("failed"):
                        self._out(f"Refresher: refreshed {result['refreshed']}, failed {result['failed']}")

        thread = threading.Thread(target=loop, name="local-refresher", daemon=True)
        thread.start()

    def _log_request(self, method: str, path: str, status: int, seconds: float) -> None:
        self._out(f"{method} {path} -> {status} ({seconds * 1000:.0f} ms)")


def main() -> int:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every AWS call otherwise
    config = LocalConfig.from_env()
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1`: every thread's stack, when it hangs
    broker = LocalBroker(config, out=lambda line: print(line, flush=True))
    try:
        broker.start()
    except OSError as exc:
        print(f"Could not start: {exc} (is port {config.broker_port} free? set BROKER_PORT)", file=sys.stderr)
        return 1
    print(f"Login link: {broker.login_url}", flush=True)
    print(f"AWS endpoint: {broker.aws_endpoint}", flush=True)
    print(f"Webex: {broker.webex_url}{' (simulator)' if broker.simulator else ''}", flush=True)
    print(
        f"The link connects '{DEMO_CONNECTION}' (secret {STACK_NAME}/tokens/{DEMO_CONNECTION}). More links: "
        "'.venv/bin/webex-broker invite NAME [--email E]'.",
        flush=True,
    )
    if broker.simulator and broker.service_apps_enabled:
        print(
            f"Service App (simulated): --app-id {DEMO_APP_ID} --client-id {DEMO_APP_CLIENT_ID} "
            f"--org {AUTHORIZED_ORG} (authorized; {UNAUTHORIZED_ORG} is not). Its client secret is "
            "WEBEX_SERVICE_APP_CLIENT_SECRET's, or the README's default.",
            flush=True,
        )
    print(f"Refresher every {config.refresh_interval:g} s. Ctrl-C stops.", flush=True)
    print(f"To aim webex-broker at this stack from any shell: export {VARIABLE}={broker.state_file}", flush=True)
    stop.wait()
    broker.stop()
    print("Stopped.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
