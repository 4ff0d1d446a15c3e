"""tcpy's Python helper: a handler is a class whose ``__init__`` takes the params and
whose ``execute()`` returns ``success(...)`` or ``error(...)``, as in the 2014 tutorial.

    from tcpy_guest import Handler, success, serve

    class Add(Handler):
        def __init__(self, x, y):
            self.x, self.y = x, y

        def execute(self):
            return success(solution=self.x + self.y)

    WitWorld = serve(Add)

``send(**fields)`` and ``recv()`` talk with the client mid-request. Params that do not
fit ``__init__`` are answered with ``bad_request`` before the handler runs; an exception
in ``execute`` is answered with ``handler_failed`` and its traceback goes to the host's log.
"""

import inspect
import json
import sys
import traceback

import wit_world
from wit_world.imports import connection


class Handler:
    """Base class of handlers: ``__init__(self, **params)``, then ``execute(self)``."""

    def execute(self):
        raise NotImplementedError("a handler defines execute(self)")


def success(**fields):
    """The response ``{"success": true, **fields}``."""
    return {**fields, "success": True}


def error(message, **fields):
    """The response ``{"error": true, "message": message, **fields}``."""
    return {**fields, "error": True, "message": message}


class SendError(Exception):
    """``send`` was refused: the message looks like a response, is too large, or the
    client has gone."""


def send(message=None, **fields):
    """Sends one message (a dict, or keyword fields) to the client; the request goes on.

    Raises ``SendError`` if the host refuses it."""
    try:
        connection.send(json.dumps({**(message or {}), **fields}))
    except wit_world.Err as refused:
        raise SendError(refused.value) from None


def recv():
    """The client's next message as a dict, or ``None`` once the client has closed."""
    text = connection.recv()
    return None if text is None else json.loads(text)


class _Binder:
    """Makes handlers of ``cls`` from params. Built once, when the module is imported,
    which componentize-py does at build time: requests do not pay for ``inspect``."""

    def __init__(self, cls):
        self.cls = cls
        self.signature = inspect.signature(cls)
        kinds = {parameter.kind for parameter in self.signature.parameters.values()}
        # Unknown params are ignored (as the Rust SDK does) unless __init__ takes **kwargs.
        self.names = None if inspect.Parameter.VAR_KEYWORD in kinds else set(self.signature.parameters)

    def bind(self, params):
        """``cls(**params)``, or ``None`` and why the params do not fit ``__init__``."""
        if not isinstance(params, dict):
            return None, "params must be a JSON object"
        if self.names is not None:
            params = {name: value for name, value in params.items() if name in self.names}
        try:
            self.signature.bind(**params)
        except TypeError as unfit:
            return None, str(unfit)
        return self.cls(**params), None


def run(binder, params_json):
    """What the component's ``execute`` does: params JSON in, response JSON out."""
    try:
        handler, unfit = binder.bind(json.loads(params_json))
    except ValueError as bad_json:
        handler, unfit = None, str(bad_json)
    if unfit is not None:
        return json.dumps(error(f"invalid params: {unfit}", code="bad_request"))
    try:
        response = handler.execute()
    except Exception as failure:
        traceback.print_exc(file=sys.stderr)
        response = error(f"{type(failure).__name__}: {failure}", code="handler_failed")
    return json.dumps(response)


def serve(cls):
    """The ``WitWorld`` class componentize-py exports, running ``cls`` per request."""

    binder = _Binder(cls)

    class WitWorld(wit_world.WitWorld):
        def execute(self, params: str) -> str:
            return run(binder, params)

    return WitWorld
