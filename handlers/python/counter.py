"""`counter`: a named counter in the key-value store "default", which `counter.toml`
grants. {"name": "visits"} -> {"success": true, "name": "visits", "value": 1}, then 2, 3, …
across requests and restarts; `name` defaults to "hits", and `by` (default 1) is what to add.
"""

from tcpy_guest import Handler, KeyValueError, Store, error, serve, success


class Counter(Handler):
    def __init__(self, name="hits", by=1):
        self.name = name
        self.by = by

    def execute(self):
        try:
            value = Store.open("default").increment(self.name, self.by)
        except KeyValueError as e:
            return error(str(e))
        return success(name=self.name, value=value)


WitWorld = serve(Counter)
