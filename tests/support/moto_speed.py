"""moto, as fast as the suite needs it, answering exactly as before: work moto repeats unchanged on every
call is done once. A third of the suite's CPU went to moto's DynamoDB UpdateItem (8 ms a call) and
EventBridge's delivery to a queue (9 ms a PutEvents); tests/integration/test_speedups.py proves each
answer unchanged against moto's own code (`ORIGINALS`).

- An update expression's clause counts and overlapping paths were checked at every nested clause, each
  check walking the whole clause below it (quadratic in the actions; the broker's login write has about
  40). Checked once at the root, which holds every action a nested clause holds.
- Each of the nine validators rebuilt its node-type table for every node it visited: built once each.
- The same update expression was parsed twice per call: parsed once per distinct expression (moto
  validates and executes a deep copy of it, never the parsed tree itself).
- EventBridge parsed its eight JSON paths (a PLY grammar) for every event and target: once per path.
- Every request listed its handler class's methods (`inspect.getmembers`): listed once per class.
"""

import functools

import jsonpath_ng.ext
import moto.core.responses
from moto.dynamodb.parsing.ast_nodes import DepthFirstTraverser, UpdateExpression
from moto.dynamodb.parsing.expressions import UpdateExpressionParser
from moto.dynamodb.parsing.validators import ActionCountValidator, OverlappingPathsValidator

ORIGINALS = {
    (ActionCountValidator, "traverse"): DepthFirstTraverser.traverse,
    (OverlappingPathsValidator, "traverse"): DepthFirstTraverser.traverse,
    (DepthFirstTraverser, "nodes_to_be_processed"): DepthFirstTraverser.nodes_to_be_processed,
    (DepthFirstTraverser, "process"): DepthFirstTraverser.process,
    (UpdateExpressionParser, "make"): UpdateExpressionParser.__dict__["make"],
    (jsonpath_ng.ext, "parse"): jsonpath_ng.ext.parse,
    (moto.core.responses, "method_names_from_class"): moto.core.responses.method_names_from_class,
}


def _at_the_root(check_name: str):
    def traverse(self, node):
        if not isinstance(node, UpdateExpression):
            return self.traverse_node_recursively(node)
        return getattr(self, check_name)(node)

    return traverse


def _table(traverser) -> dict:
    """The traverser's node types and what it does with each (its own constant)."""
    if "_table" not in traverser.__dict__:
        traverser._table = traverser._processing_map()
        traverser._types = tuple(traverser._table)
    return traverser._table


def _nodes_to_be_processed(self) -> tuple:
    _table(self)
    return self._types


def _process(self, node):
    for node_type, processor in _table(self).items():
        if isinstance(node, node_type):
            return processor(node)
    return None


def apply() -> None:
    ActionCountValidator.traverse = _at_the_root("verify_action_counts")
    OverlappingPathsValidator.traverse = _at_the_root("check_for_overlapping_paths")
    DepthFirstTraverser.nodes_to_be_processed = _nodes_to_be_processed
    DepthFirstTraverser.process = _process
    UpdateExpressionParser.make = staticmethod(functools.cache(UpdateExpressionParser.make))
    jsonpath_ng.ext.parse = functools.cache(jsonpath_ng.ext.parse)
    moto.core.responses.method_names_from_class = functools.cache(moto.core.responses.method_names_from_class)
