"""One logger and one metrics emitter for the whole broker, imported rather than rebuilt."""

from aws_lambda_powertools import Logger, Metrics

SERVICE = "webex-token-broker"
NAMESPACE = "WebexTokenBroker"

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
