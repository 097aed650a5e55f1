"""Where a running `make run` tells `webex-broker` how to reach it. The operator CLI owns this contract
and the dev stack writes to it, so the CLI never imports the dev stack to find a local broker."""

import os
import tempfile
from pathlib import Path


def local_state_path() -> Path:
    """WEBEX_BROKER_LOCAL_STATE, or a per-user file in the temp directory."""
    override = os.environ.get("WEBEX_BROKER_LOCAL_STATE")
    return Path(override) if override else Path(tempfile.gettempdir()) / f"webex-token-broker-local-{os.getuid()}.json"
