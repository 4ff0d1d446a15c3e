"""`add`: the sum of two integers, {"x": 1, "y": 2} -> {"success": true, "solution": 3}."""

from tcpy_guest import Handler, error, serve, success

I64 = range(-(2**63), 2**63)


class Add(Handler):
    def __init__(self, x, y):
        self.x = x
        self.y = y

    def execute(self):
        solution = self.x + self.y  # a string and a number raise TypeError
        if solution not in I64:
            return error("the sum is outside the 64-bit integer range")
        return success(solution=solution)


WitWorld = serve(Add)
