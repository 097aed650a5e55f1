"""Where a running `make run` tells `webex-broker` how to reach it (kept import-light for the CLI)."""

import os
import tempfile
from pathlib import Path


def local_state_path() -> Path:
    """WEBEX_BROKER_LOCAL_STATE, or a per-user file in the temp directory."""
    override = os.environ.get("WEBEX_BROKER_LOCAL_STATE")
    return Path(override) if override else Path(tempfile.gettempdir()) / f"webex-token-broker-local-{os.getuid()}.json"
