"""The admin function's requests, read before anything is asked or stored: a field that is not what
its action needs is a usage error naming it (Refused), never a crash."""

from webex_broker.core.errors import Refused


def text(event: dict, key: str, *, required: bool = True) -> str:
    """A string field, stripped; one no AWS call or HTTP request can carry is refused."""
    value = event.get(key, "")
    if not isinstance(value, str) or (required and not value.strip()):
        raise Refused("usage", f"{key} must be a non-empty string.")
    try:
        value.encode()
    except UnicodeEncodeError:  # a lone surrogate: no secret store or HTTP request can carry it
        raise Refused("usage", f"{key} is not valid text (a lone surrogate).") from None
    return value.strip()


def flag(event: dict, key: str) -> bool:
    """An optional true/false field; absent is false."""
    value = event.get(key, False)
    if not isinstance(value, bool):
        raise Refused("usage", f"{key} must be true or false.")
    return value
