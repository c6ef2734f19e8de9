"""User code that the tests name by import path (`user_code.loops:good`, ...): loops of one's
own, well and badly behaved, and models. `tests/` is on the path (pyproject's pythonpath)."""
