"""One logger for the whole broker, so every module logs with the same service and keys."""

from aws_lambda_powertools import Logger

logger = Logger(service="webex-token-broker")
