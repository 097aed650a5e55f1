"""The admin function's requests and answers, as typed values on both sides: `webex-broker` builds a
request and reads its answer with these classes, and the function reads each request field by field
before anything is asked or stored. A field that is not what its action needs is a usage error naming
it (Refused), never a crash."""

import types
from dataclasses import MISSING, asdict, dataclass, fields
from typing import Any, ClassVar, Union, get_args, get_origin, get_type_hints

from webex_broker.core.errors import Refused


@dataclass(frozen=True)
class SetCredentials:
    action: ClassVar[str] = "set_credentials"
    client_id: str
    client_secret: str
    force: bool = False

    def __repr__(self) -> str:
        return f"SetCredentials(client_id={self.client_id!r}, client_secret=***, force={self.force})"


@dataclass(frozen=True)
class CheckCredentials:
    action: ClassVar[str] = "check_credentials"


@dataclass(frozen=True)
class CheckSealed:
    action: ClassVar[str] = "check_sealed"
    secrets: tuple[str, ...]


@dataclass(frozen=True)
class AddServiceApp:
    action: ClassVar[str] = "add_service_app"
    connection: str
    app_id: str
    client_id: str
    client_secret: str
    org_id: str
    via: str = ""
    refresh_token: str = ""
    new_client: bool = False

    def __repr__(self) -> str:
        return f"AddServiceApp(connection={self.connection!r}, app_id={self.app_id!r}, secrets=***)"


@dataclass(frozen=True)
class Converge:
    action: ClassVar[str] = "converge"
    connections: tuple[str, ...] | None = None  # None: every connection


AdminRequest = SetCredentials | CheckCredentials | CheckSealed | AddServiceApp | Converge
REQUESTS: dict[str, type[AdminRequest]] = {
    kind.action: kind for kind in (SetCredentials, CheckCredentials, CheckSealed, AddServiceApp, Converge)
}


@dataclass(frozen=True)
class CredentialsStored:
    message: str


@dataclass(frozen=True)
class CredentialsChecked:
    result: str  # ok, warn or fail: doctor's words
    detail: str
    fix: str


@dataclass(frozen=True)
class SealedChecked:
    refused: dict[str, str]  # refresh secret -> what AWS refused reading it


@dataclass(frozen=True)
class ServiceAppAdded:
    access_expires_at: int


@dataclass(frozen=True)
class Converged:
    results: dict[str, str]  # connection -> converged, unchanged or failed


AdminAnswer = CredentialsStored | CredentialsChecked | SealedChecked | ServiceAppAdded | Converged


def as_event(request: AdminRequest) -> dict:
    """The invocation's JSON."""
    values = {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(request).items()}
    return {"action": request.action, **{key: value for key, value in values.items() if value is not None}}


def parse(event: object) -> AdminRequest:
    """The request an invocation carries; Refused("usage") names the first field that is wrong."""
    action = event.get("action") if isinstance(event, dict) else None
    kind = REQUESTS.get(action) if isinstance(action, str) else None
    if kind is None or not isinstance(event, dict):
        raise Refused("usage", f"No such action {action!r}; the actions are {', '.join(sorted(REQUESTS))}.")
    hints = get_type_hints(kind)
    values: dict[str, Any] = {
        field.name: _read(event, field.name, hints[field.name], required=field.default is MISSING)
        for field in fields(kind)
    }
    return kind(**values)


def answer(result: AdminAnswer) -> dict:
    return {"ok": True, **asdict(result)}


def refusal(exc: Refused) -> dict:
    return {"ok": False, "error": exc.kind, "message": str(exc)}


def read_answer[T: AdminAnswer](response: object, kind: type[T]) -> T:
    """The function's answer as `kind`, or the Refused it answered (kind "failed" if it answered nonsense)."""
    if not isinstance(response, dict) or not response.get("ok"):
        error = response.get("error", "failed") if isinstance(response, dict) else "failed"
        message = response.get("message", "") if isinstance(response, dict) else ""
        raise Refused(str(error), str(message) or f"the admin function answered no {kind.__name__}")
    try:
        return kind(**{field.name: response[field.name] for field in fields(kind)})
    except (KeyError, TypeError):
        raise Refused("failed", f"the admin function's answer is no {kind.__name__}") from None


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


def _read(event: dict, key: str, hint: object, *, required: bool) -> object:
    if hint is str:
        return text(event, key, required=required)
    if hint is bool:
        return flag(event, key)
    optional = get_origin(hint) in (Union, types.UnionType) and type(None) in get_args(hint)
    if optional and key not in event:
        return None
    value = event.get(key)
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise Refused("usage", f"{key} must be a list of strings.")
    return tuple(value)
