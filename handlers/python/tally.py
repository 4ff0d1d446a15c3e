"""`tally`: a running total, kept in conversation with the client.

The request may give a `start` (default 0). Each client message {"n": <integer>} adds n
and is answered with {"total": <total>}, until the client sends {"done": true} or
closes; the response is {"success": true, "total": <total>, "count": <numbers added>}.
"""

from tcpy_guest import Handler, recv, send, serve, success

EXPECTED = 'expected {"n": number} or {"done": true}'
I64 = range(-(2**63), 2**63)


class Tally(Handler):
    def __init__(self, start=0):
        self.start = start

    def execute(self):
        total, count = self.start, 0
        while (message := recv()) is not None:
            if message.get("done") is True:
                break
            n = message.get("n")
            if type(n) is not int:
                send(warning=EXPECTED)
            elif total + n not in I64:
                send(warning=f"adding {n} would overflow the total {total}")
            else:
                total, count = total + n, count + 1
                send(total=total)
        return success(total=total, count=count)


WitWorld = serve(Tally)
