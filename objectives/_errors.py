"""The exceptions training raises, and one-line messages for configuration errors."""

from __future__ import annotations

import pydantic


class ConfigError(ValueError):
    """A configuration value is invalid; the message is one line naming the field and the fix."""


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite (usually a learning rate too large)."""

    def __init__(self, epoch: int, loss: float) -> None:
        super().__init__(
            f"training loss became {loss} in epoch {epoch}; lower the learning rate or the scale"
        )
        self.epoch = epoch
        self.loss = loss


def describe_validation_error(error: pydantic.ValidationError, prefix: str = "") -> str:
    """The first problem of a pydantic error as one line: "field 'a.b': what is wrong"."""
    first = error.errors()[0]
    # Union branches tagged "<...>" name the form, not a field: leave them out.
    parts = [str(p) for p in (prefix, *first["loc"]) if p != "" and not str(p).startswith("<")]
    location = ".".join(parts)
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "unknown field; check its spelling against the documented fields"
    elif first["type"] == "missing":
        message = "required field is missing"
    more = len(error.errors()) - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return f"field '{location}': {message}{suffix}"
