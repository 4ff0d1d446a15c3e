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

``Store.open(name)`` opens a key-value store the handler's manifest grants (``[keyvalue]
stores``): ``get``, ``set``, ``delete``, ``exists``, ``keys``, ``increment``, ``cas``,
``update`` and the batch ``get_many``, ``set_many``, ``delete_many``. Its failures raise
``KeyValueError``.

    value = Store.open("default").increment("visits", 1)   # kept as text: "1", "2", …
"""

import inspect
import json
import sys
import traceback

import wit_world
from wit_world.imports import atomics, batch, connection, store


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


class KeyValueError(Exception):
    """A key-value store operation failed. ``kind`` says how: ``"no_such_store"``,
    ``"access_denied"`` (the manifest does not grant the store) or ``"other"`` (a key
    too long, a value too large, a store that did not answer…); ``str(error)`` says why."""

    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind


def _kv(call, *args):
    """``call(*args)``, with the host's ``wasi:keyvalue`` error raised as ``KeyValueError``."""
    try:
        return call(*args)
    except wit_world.Err as failed:
        raise _error(failed.value) from None


def _error(error):
    """The ``KeyValueError`` of a ``wasi:keyvalue/store.error``."""
    match error:
        case store.Error_NoSuchStore():
            return KeyValueError("no_such_store", "no such store")
        case store.Error_AccessDenied():
            why = "access denied: the handler's manifest does not grant this store"
            return KeyValueError("access_denied", why)
        case store.Error_Other(value=message):
            return KeyValueError("other", message)


# The component traps on an argument of the wrong type: these raise a TypeError first.

_I64 = range(-(2**63), 2**63)


def _key(key):
    """``key``, if it is a ``str``."""
    if not isinstance(key, str):
        raise TypeError(f"a key is str, not {type(key).__name__}")
    return key


def _bytes(value):
    """A value as the store keeps it: ``bytes`` as they are, a ``str`` encoded UTF-8."""
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"a value is str or bytes, not {type(value).__name__}")


UPDATE_TRIES = 100
"""How often ``Store.update`` reads and tries again before it gives up."""


class Store:
    """An open key-value store. Values are ``bytes`` (a ``str`` given is stored UTF-8);
    every method raises ``KeyValueError`` if the store fails."""

    def __init__(self, bucket):
        self._bucket = bucket

    @classmethod
    def open(cls, name):
        """Opens the store ``name``, which the handler's manifest must grant."""
        return cls(_kv(store.open, _key(name)))

    def get(self, key):
        """The value at ``key`` (``bytes``), or ``None``."""
        return _kv(self._bucket.get, _key(key))

    def set(self, key, value):
        """Sets ``key`` to ``value`` (``str`` or ``bytes``)."""
        _kv(self._bucket.set, _key(key), _bytes(value))

    def delete(self, key):
        """Removes ``key``; removing a key that is not there is not an error."""
        _kv(self._bucket.delete, _key(key))

    def exists(self, key):
        """Whether ``key`` is there."""
        return _kv(self._bucket.exists, _key(key))

    def keys(self):
        """Every key of the store, in byte order, fetched a page at a time."""
        cursor = None
        while True:
            page = _kv(self._bucket.list_keys, cursor)
            yield from page.keys
            if (cursor := page.cursor) is None:
                return

    def increment(self, key, delta=1):
        """Adds ``delta`` (a 64-bit ``int``) to the counter at ``key`` (a missing key counts
        as 0) and returns its new value. Counters are decimal text, so ``get`` reads ``b"42"``."""
        if type(delta) is not int or delta not in _I64:
            raise TypeError(f"a delta is a 64-bit int, not {delta!r}")
        return _kv(atomics.increment, self._bucket, _key(key), delta)

    def cas(self, key):
        """Prepares a compare-and-swap of ``key``: the ``Cas`` remembers its value now."""
        return Cas(_kv(atomics.Cas.new, self._bucket, _key(key)))

    def update(self, key, change):
        """Sets ``key`` to ``change(its value or None)``, atomically: if another request
        changes the key in between, ``change`` runs again on the new value (up to
        ``UPDATE_TRIES`` times). Returns the value written, as ``bytes``."""
        cas = self.cas(key)
        for _ in range(UPDATE_TRIES):
            value = _bytes(change(cas.current()))
            if (cas := cas.swap(value)) is None:
                return value
        raise KeyValueError("other", f"`{key}` changed under every one of {UPDATE_TRIES} tries")

    def get_many(self, keys):
        """The values at ``keys``, in order (``None`` where absent), read together."""
        found = _kv(batch.get_many, self._bucket, [_key(key) for key in keys])
        return [None if entry is None else entry[1] for entry in found]

    def set_many(self, entries):
        """Sets every key to its value (a dict, or ``(key, value)`` pairs), all or none."""
        pairs = [(_key(key), _bytes(value)) for key, value in dict(entries).items()]
        _kv(batch.set_many, self._bucket, pairs)

    def delete_many(self, keys):
        """Removes every key of ``keys``, all or none."""
        _kv(batch.delete_many, self._bucket, [_key(key) for key in keys])


class Cas:
    """A compare-and-swap in preparation, from ``Store.cas``."""

    def __init__(self, cas):
        self._cas = cas

    def current(self):
        """The value (``bytes``, or ``None``) the key held when this was prepared."""
        return _kv(self._cas.current)

    def swap(self, value):
        """Writes ``value`` if the key still holds ``current()``: ``None`` when written,
        or a fresh ``Cas`` (holding the key's value now) when another request changed it
        first. The ``Cas`` is used up either way."""
        try:
            atomics.swap(self._cas, _bytes(value))
        except wit_world.Err as failed:
            match failed.value:
                case atomics.CasError_CasFailed(value=fresh):
                    return Cas(fresh)
                case atomics.CasError_StoreError(value=error):
                    raise _error(error) from None
        return None


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
