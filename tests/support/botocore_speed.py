"""botocore, as fast as a suite that starts every test cold needs it, answering exactly as before.

Every test gets a new boto3 session and new clients, as a new Lambda container would. A new session
registers 128 built-in event handlers, and each client copies and adds more: for each one botocore read
the handler's signature (`inspect`, to check it takes **kwargs) and derived the event name's alias again,
though both are constants of the handler and of the name. 6.8 ms a session, a tenth of the suite's CPU
with the clients. Here each is worked out once: per function, and per event name for botocore's own
aliases. tests/integration/test_speedups.py proves the answers unchanged (`ORIGINALS`)."""

import types
import weakref

import botocore.hooks

ORIGINALS = {
    (botocore.hooks, "accepts_kwargs"): botocore.hooks.accepts_kwargs,
    (botocore.hooks.EventAliaser, "__init__"): botocore.hooks.EventAliaser.__init__,
}
_takes_kwargs: "weakref.WeakKeyDictionary[types.FunctionType, bool]" = weakref.WeakKeyDictionary()
_aliases: dict[str, str] = {}  # event name → its name under botocore's own aliases


def accepts_kwargs(handler) -> bool:
    function = handler.__func__ if isinstance(handler, types.MethodType) else handler
    if not isinstance(function, types.FunctionType):
        return ORIGINALS[(botocore.hooks, "accepts_kwargs")](handler)
    if function not in _takes_kwargs:
        _takes_kwargs[function] = ORIGINALS[(botocore.hooks, "accepts_kwargs")](function)
    return _takes_kwargs[function]


def _aliaser_init(self, event_emitter, event_aliases=None) -> None:
    """A session's aliaser, and each client's copy of it, share the names worked out under botocore's own aliases."""
    ORIGINALS[(botocore.hooks.EventAliaser, "__init__")](self, event_emitter, event_aliases)
    if self._event_aliases == botocore.hooks.EVENT_ALIASES:
        self._alias_name_cache = _aliases


def apply() -> None:
    botocore.hooks.accepts_kwargs = accepts_kwargs
    botocore.hooks.EventAliaser.__init__ = _aliaser_init
