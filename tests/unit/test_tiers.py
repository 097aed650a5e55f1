"""The tiers stay apart: a test module imports shared code from tests/support, never from another test
module or a conftest (fixtures reach tests through pytest, not imports)."""

import ast
import socket

import pytest
from moto import mock_aws

from tests.support.paths import ROOT

TESTS = ROOT / "tests"


def imported_modules(path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_no_test_module_imports_another_or_a_conftest():
    offending = {
        str(path.relative_to(ROOT)): sorted(
            m for m in imported_modules(path) if m.startswith("tests.") and not m.startswith("tests.support")
        )
        for path in TESTS.rglob("*.py")
    }
    assert {path: modules for path, modules in offending.items() if modules} == {}


def test_support_code_holds_no_test():
    tests = [
        f"{path.relative_to(ROOT)}:{node.name}"
        for path in (TESTS / "support").glob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test")
    ]
    assert tests == []


def test_this_tier_refuses_sockets_and_moto():
    with pytest.raises(AssertionError, match="tests/integration"), socket.socket() as s:
        s.connect(("127.0.0.1", 9))
    with pytest.raises(AssertionError, match="tests/integration"), mock_aws():
        pass
