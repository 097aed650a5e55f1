"""The library's floors, as the layout shows them: core at the bottom, then the adapters (AWS and
Webex), the flows, and the HTTP edge on top. A module may import its own floor and those below,
never one above; the operator CLI stands on the library and never on the dev stack."""

import ast
import re
from pathlib import Path

import pytest

from tests.support.paths import ROOT

LIBRARY = ROOT / "shared" / "webex_broker"
FLOORS = ["core", "adapters", "flows", "edge"]


def imported(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function, as a dotted name."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def floor_of(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "webex_broker" or len(parts) < 2:
        return None
    return FLOORS.index(parts[1])


def test_every_library_module_lives_on_a_floor():
    loose = [p.name for p in LIBRARY.glob("*.py") if p.name != "__init__.py"]
    assert loose == [], "a module belongs to core, adapters, flows or edge"
    assert sorted(p.name for p in LIBRARY.iterdir() if p.is_dir() and p.name != "__pycache__") == sorted(FLOORS)


@pytest.mark.parametrize("floor", FLOORS)
def test_no_module_reaches_up(floor):
    above = []
    for path in sorted((LIBRARY / floor).glob("*.py")):
        for module in imported(path):
            target = floor_of(module)
            if target is not None and target > FLOORS.index(floor):
                above.append(f"{floor}/{path.name} imports {module}")
    assert above == []


def test_the_library_stands_alone():
    """The Lambda layer ships webex_broker only: it cannot import the CLI, the dev stack or tests."""
    outside = ("webex_broker_admin", "devstack", "tests", "bench", "moto", "flask")
    found = [
        f"{path.relative_to(LIBRARY)} imports {module}"
        for path in sorted(LIBRARY.rglob("*.py"))
        for module in imported(path)
        if module.split(".")[0] in outside
    ]
    assert found == []


def test_the_operator_cli_does_not_depend_on_the_dev_stack():
    found = [
        f"{path.name} imports {module}"
        for path in sorted((ROOT / "webex_broker_admin").glob("*.py"))
        for module in imported(path)
        if module.split(".")[0] in ("devstack", "moto", "flask", "yaml")
    ]
    assert found == []


def test_flows_catch_only_the_brokers_own_errors():
    """The adapters translate AWS's and Powertools' errors (core/errors.py): no flow imports them."""
    foreign = ("botocore", "boto3", "aws_lambda_powertools.utilities.parameters", "requests")
    found = [
        f"flows/{path.name} imports {module}"
        for path in sorted((LIBRARY / "flows").glob("*.py"))
        for module in imported(path)
        if module.startswith(foreign)
    ]
    assert found == []


def test_no_import_cycle():
    """Calls go one way within a floor too: no module reaches itself through its imports."""
    modules = {
        "webex_broker." + ".".join(path.relative_to(LIBRARY).with_suffix("").parts): path
        for path in LIBRARY.rglob("*.py")
        if path.name != "__init__.py"
    }
    edges = {
        name: {m for m in imported(path) if m in modules} | {m.rsplit(".", 1)[0] for m in imported(path)} & set(modules)
        for name, path in modules.items()
    }
    cycles, state = [], {}

    def visit(module: str, trail: list[str]) -> None:
        state[module] = "open"
        for target in sorted(edges[module] - {module}):
            if state.get(target) == "open":
                cycles.append(" -> ".join([*trail[trail.index(target) :], target]))
            elif target not in state:
                visit(target, [*trail, target])
        state[module] = "done"

    for module in sorted(modules):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_flows_name_no_http_status():
    """What a status means (throttled, forbidden, someone else's) is named in core; the pages and the
    route's answers choose the HTTP status in the edge."""
    status = re.compile(r"status\s*(==|=|!=)\s*[1-5]\d\d\b|\b[1-5]\d\d\s*==\s*\w*status")
    found = [
        f"flows/{path.name}:{number}: {line.strip()}"
        for path in sorted((LIBRARY / "flows").glob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if status.search(line)
    ]
    assert found == []
