"""One logger and one metrics emitter for the whole broker, imported rather than rebuilt."""

import os
import warnings

from aws_lambda_powertools import Logger, Metrics

# The template sets the service name (the stack's); the namespace is this default, which the alarms match.
SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "webex-token-broker")
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "WebexTokenBroker")

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)

# The login functions count only what goes wrong (AwsAccessDenied, say): an invocation with nothing to
# count is the normal case, not something to warn about on every request.
warnings.filterwarnings("ignore", message="No application metrics to publish", category=UserWarning)
