"""Where each running `make run` tells `webex-broker` how to reach it. The operator CLI owns this contract
and the dev stack writes to it, so the CLI never imports the dev stack to find a local broker.

Every `make run` keeps its own file (named by its process id) and removes it on exit, so two of them
never overwrite each other; WEBEX_BROKER_LOCAL_STATE names one file instead (what `make run` prints)."""

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

VARIABLE = "WEBEX_BROKER_LOCAL_STATE"


@dataclass(frozen=True)
class LocalStack:
    path: Path
    state: dict

    @property
    def broker_url(self) -> str:
        return str(self.state["broker_url"])


def state_directory() -> Path:
    return Path(tempfile.gettempdir()) / f"webex-token-broker-{os.getuid()}"


def state_path_for(pid: int) -> Path:
    """Where a `make run` writes its state: WEBEX_BROKER_LOCAL_STATE when set, else its own file."""
    override = os.environ.get(VARIABLE)
    return Path(override) if override else state_directory() / f"local-{pid}.json"


def read(path: Path) -> LocalStack | None:
    """The stack that wrote `path`, if it is still running."""
    try:
        state = json.loads(path.read_text())
        os.kill(int(state["pid"]), 0)
        return LocalStack(path, state) if state.get("broker_url") else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def running() -> list[LocalStack]:
    """Every local stack of this user that is still running, by its file's name."""
    stacks = (read(path) for path in sorted(state_directory().glob("local-*.json")))
    return [stack for stack in stacks if stack is not None]
