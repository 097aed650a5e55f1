"""Loading the template's functions and calling them the way the Lambda runtime does."""

import functools
import importlib
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from devstack import function_roles
from devstack.template import function_definitions

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class LambdaContext:
    """The attributes of Lambda's context object that handlers and Powertools read."""

    function_name: str = "local-function"
    memory_limit_in_mb: int = 256
    timeout_seconds: int = 20
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    invoked_function_arn: str = ""
    _started: float = field(default_factory=time.monotonic)

    def __post_init__(self):
        self.invoked_function_arn = (
            self.invoked_function_arn or f"arn:aws:lambda:us-east-1:123456789012:function:{self.function_name}"
        )

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.timeout_seconds - (time.monotonic() - self._started)) * 1000))


@dataclass(frozen=True)
class LocalFunction:
    logical_id: str
    properties: dict

    def load_handler(self):
        """Imported on first use, as Lambda does: the function's folder and the shared layer on sys.path.
        The module's handler is replaced by one that signs as the function's role, so that whoever imports
        it (this runtime, or a test's `from refresher import handler`) calls it as Lambda would."""
        code_dir = str(ROOT / self.properties["CodeUri"])
        for path in (str(ROOT / "shared"), code_dir):
            if path not in sys.path:
                sys.path.insert(0, path)
        module_name, attribute = self.properties["Handler"].rsplit(".", 1)
        module = importlib.import_module(module_name)
        handler = getattr(module, attribute)
        if not hasattr(handler, "signs_as"):
            handler = _signing_as(self.logical_id, handler)
            setattr(module, attribute, handler)
        return handler

    def invoke(self, event: dict) -> dict:
        context = LambdaContext(function_name=self.logical_id, timeout_seconds=int(self.properties.get("Timeout", 20)))
        return self.load_handler()(event, context)

    def events(self, kind: str) -> list[dict]:
        return [e["Properties"] for e in self.properties.get("Events", {}).values() if e["Type"] == kind]


def _signing_as(function: str, handler):
    @functools.wraps(handler)
    def signed(event, context):
        with function_roles.signing_as(function):
            return handler(event, context)

    signed.signs_as = function
    return signed


def cold_start() -> None:
    """Forget what a warm Lambda keeps between invocations: settings, boto3 clients, the cached client secret."""
    from webex_broker.adapters import aws, client_credentials, webex
    from webex_broker.core import settings
    from webex_broker.flows import broker

    settings.load_settings.cache_clear()
    broker.current.cache_clear()
    aws.forget_clients()
    client_credentials._provider.cache_clear()
    client_credentials._client_ids.cache_clear()
    webex.http_session.cache_clear()


def local_functions() -> list[LocalFunction]:
    return [LocalFunction(name, props) for name, props in function_definitions().items()]


def sign_handlers_as_roles() -> None:
    """Every function's handler, however it is imported, signs as its role from now on."""
    for function in local_functions():
        function.load_handler()
