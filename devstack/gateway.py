"""A local API Gateway (HTTP API, payload v2): each request becomes the event the real service would
send, the template's handler answers, and its status, headers, cookies and body go back unchanged.

It also answers Lambda's Invoke API, so the operator CLI calls the functions with the boto3 lambda
client it uses against AWS."""

import base64
import json
import logging
import re
import threading
import time
import uuid
from datetime import UTC, datetime

from werkzeug.wrappers import Request, Response

from devstack import sigv4
from devstack.lambda_runtime import LocalFunction

BINARY_TYPES = ("application/octet-stream", "image/", "application/zip")
INVALID_TOKEN = "The security token included in the request is invalid."
LAMBDA_API = re.compile(r"^/2015-03-31/functions/(?P<name>[^/]+)/(?P<operation>invocations|configuration)$")
LAMBDA_METHODS = {"invocations": "POST", "configuration": "GET"}


class Route:
    def __init__(self, method: str, path: str, function: LocalFunction, authorizer: str | None = None):
        self.method = method.upper()
        self.path = path
        self.function = function
        self.authorizer = authorizer
        pattern = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(path))
        self._regex = re.compile(f"^{pattern}$")

    def match(self, method: str, path: str) -> dict | None:
        found = self._regex.match(path)
        if found is None or method.upper() not in (self.method, "ANY"):
            return None
        return found.groupdict()


def routes_from(functions: list[LocalFunction]) -> list[Route]:
    """Every HttpApi event in the template becomes a route."""
    return [
        Route(event["Method"], event["Path"], function, event.get("Auth", {}).get("Authorizer"))
        for function in functions
        for event in function.events("HttpApi")
    ]


def to_event(request: Request, route: Route, path_parameters: dict) -> dict:
    """The HTTP API v2 event: lowercase headers, repeated values comma-joined, cookies split out."""
    headers: dict[str, str] = {}
    for name, value in request.headers.items():
        key = name.lower()
        if key != "cookie":
            headers[key] = f"{headers[key]},{value}" if key in headers else value
    headers.setdefault("x-forwarded-proto", request.scheme)
    query = {key: ",".join(values) for key, values in request.args.lists()}
    body = request.get_data()
    binary = any(request.mimetype.startswith(t) for t in BINARY_TYPES)
    now = time.time()
    event = {
        "version": "2.0",
        "routeKey": f"{route.method} {route.path}",
        "rawPath": request.path,
        "rawQueryString": request.query_string.decode("latin-1"),
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "domainName": request.host,
            "domainPrefix": request.host.split(".")[0],
            "http": {
                "method": request.method,
                "path": request.path,
                "protocol": request.environ.get("SERVER_PROTOCOL", "HTTP/1.1"),
                "sourceIp": request.remote_addr or "127.0.0.1",
                "userAgent": request.headers.get("User-Agent", ""),
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": f"{route.method} {route.path}",
            "stage": "$default",
            "time": datetime.fromtimestamp(now, UTC).strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": binary,
    }
    if request.cookies:
        event["cookies"] = [f"{k}={v}" for k, v in request.cookies.items(multi=True)]
    if query:
        event["queryStringParameters"] = query
    if path_parameters:
        event["pathParameters"] = path_parameters
    if body:
        event["body"] = base64.b64encode(body).decode() if binary else body.decode("utf-8")
    return event


def to_response(result: dict) -> Response:
    body = result.get("body") or ""
    data = base64.b64decode(body) if result.get("isBase64Encoded") else body.encode("utf-8")
    response = Response(data, status=int(result.get("statusCode", 200)))
    response.headers.clear()
    for name, value in (result.get("headers") or {}).items():
        response.headers[name] = str(value)
    for cookie in result.get("cookies") or []:
        response.headers.add("Set-Cookie", cookie)
    return response


class LocalGateway:
    def __init__(
        self,
        routes: list[Route],
        *,
        credentials: tuple[str, str] = ("", ""),
        on_request=None,
        functions: dict[str, LocalFunction] | None = None,
    ):
        self.routes = routes
        self.functions = functions or {}  # logical id → function, for Lambda's Invoke API
        self.environment: dict[str, str] = {}  # the functions' variables, as GetFunctionConfiguration shows them
        self.credentials = credentials
        self._on_request = on_request or (lambda method, route, status, ms: None)

    def __call__(self, environ, start_response):
        request = Request(environ)
        started = time.monotonic()
        call = LAMBDA_API.match(request.path)
        if call is not None and LAMBDA_METHODS[call["operation"]] == request.method:
            name = function_name(call["name"])
            response = self._lambda(request, name, call["operation"])
            path = f"/2015-03-31/functions/{name}/{call['operation']}"
            self._on_request(request.method, path, response.status_code, time.monotonic() - started)
            return response(environ, start_response)
        for route in self.routes:
            params = route.match(request.method, request.path)
            if params is not None:
                response = self._dispatch(request, route, params)
                self._on_request(request.method, route.path, response.status_code, time.monotonic() - started)
                return response(environ, start_response)
        response = Response('{"message":"Not Found"}', status=404, content_type="application/json")
        return response(environ, start_response)

    def _verify(self, request: Request, service: str) -> dict:
        access_key, secret_key = self.credentials
        return sigv4.verify(
            method=request.method,
            url=request.url,
            headers=dict(request.headers.items()),
            body=request.get_data(),
            access_key=access_key,
            secret_key=secret_key,
            service=service,
        )

    def _dispatch(self, request: Request, route: Route, params: dict) -> Response:
        event = to_event(request, route, params)
        if route.authorizer == "AWS_IAM":
            try:
                identity = self._verify(request, "execute-api")
            except sigv4.SignatureRejected:
                return Response('{"message":"Forbidden"}', 403, content_type="application/json")
            event["requestContext"]["authorizer"] = {"iam": identity}
        try:
            return to_response(route.function.invoke(event))
        except Exception:  # what API Gateway answers when the function itself fails
            return Response('{"message":"Internal Server Error"}', 500, content_type="application/json")

    def _lambda(self, request: Request, name: str, operation: str) -> Response:
        """Lambda's Invoke (RequestResponse) and GetFunctionConfiguration: signed by the stack's
        credentials, answered as Lambda does."""
        try:
            self._verify(request, "lambda")
        except sigv4.SignatureRejected:
            return lambda_error(403, "UnrecognizedClientException", {"message": INVALID_TOKEN})
        function = self.functions.get(name) or self.functions.get(_logical_id(name, self.functions))
        if function is None:
            return lambda_error(
                404, "ResourceNotFoundException", {"Type": "User", "message": f"Function not found: {name}"}
            )
        if operation == "configuration":
            configuration = {"FunctionName": name, "Environment": {"Variables": self.environment}}
            return Response(json.dumps(configuration), 200, content_type="application/json")
        try:
            event = json.loads(request.get_data() or b"{}")
        except ValueError as exc:
            return lambda_error(
                400,
                "InvalidRequestContentException",
                {"Type": "User", "message": f"Could not parse request body into json: {exc}"},
            )
        if request.headers.get("X-Amz-Invocation-Type") == "Event":  # asynchronous: queued, answered 202
            threading.Thread(target=_invoke_quietly, args=(function, event), daemon=True).start()
            return Response(b"", 202)
        headers = {"X-Amz-Executed-Version": "$LATEST"}
        try:
            payload = json.dumps(function.invoke(event))
        except Exception as exc:  # the function failed: Lambda still answers 200, and says so in a header
            headers["X-Amz-Function-Error"] = "Unhandled"
            payload = json.dumps({"errorMessage": str(exc), "errorType": type(exc).__name__})
        return Response(payload, 200, headers=headers, content_type="application/json")


def _invoke_quietly(function, event: dict) -> None:
    """An asynchronous invocation: nobody waits for its answer, and a failure is the function's log's."""
    try:
        function.invoke(event)
    except Exception:  # as Lambda: an async invocation's error goes to its log, never to the caller
        logging.getLogger(__name__).exception("Asynchronous invocation of %s failed", function.logical_id)


def function_name(name: str) -> str:
    """Lambda takes a function's name, its ARN or a partial ARN (`ACCOUNT:function:NAME`), each with an
    optional `:qualifier`; locally the name is the template's logical id."""
    return name.rpartition(":function:")[2].split(":")[0]


def _logical_id(name: str, functions: dict) -> str:
    """CloudFormation names a function `<stack>-<logical id>-<suffix>`: a deployed stack's name (as
    `--stack` finds it) reaches the local function it was made from."""
    return next((part for part in name.split("-") if part in functions), "")


def lambda_error(status: int, error_type: str, body: dict) -> Response:
    """An error as Lambda answers it: botocore takes the error code from x-amzn-ErrorType."""
    return Response(json.dumps(body), status, headers={"x-amzn-ErrorType": error_type}, content_type="application/json")
