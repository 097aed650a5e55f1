"""One logger and one metrics emitter for the whole broker, imported rather than rebuilt."""

import os

from aws_lambda_powertools import Logger, Metrics

# The template sets both; the defaults keep scripts and tests that import the library working.
SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "webex-token-broker")
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "WebexTokenBroker")

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
