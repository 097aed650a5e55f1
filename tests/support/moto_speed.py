"""moto's DynamoDB, as fast as the suite needs it, faulting exactly where it faulted before.

moto checks an update expression's clause counts and overlapping paths at every nested clause of the
expression, each check walking the whole clause below it: quadratic in the number of actions. The
broker's login write (about 40 actions) took 17 ms of moto's time, and a tenth of the suite's CPU.
Checked once at the expression's root, the same expressions are refused with the same errors: the root
holds every action each nested clause holds."""

from moto.dynamodb.parsing.ast_nodes import UpdateExpression
from moto.dynamodb.parsing.validators import ActionCountValidator, OverlappingPathsValidator


def _at_the_root(check_name: str):
    def traverse(self, node):
        if not isinstance(node, UpdateExpression):
            return self.traverse_node_recursively(node)
        return getattr(self, check_name)(node)

    return traverse


def apply() -> None:
    ActionCountValidator.traverse = _at_the_root("verify_action_counts")
    OverlappingPathsValidator.traverse = _at_the_root("check_for_overlapping_paths")
