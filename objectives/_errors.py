"""The exceptions training raises, and one-line messages for configuration errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pydantic
import yaml


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
    # A key of odd characters (a newline) is shown escaped, so the message stays one line.
    parts = [p if p.isprintable() else p.encode("unicode_escape").decode() for p in parts]
    location = ".".join(parts)
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "unknown field; check its spelling against the documented fields"
    elif first["type"] == "missing":
        message = "required field is missing"
    more = len(error.errors()) - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    if not location:  # a check of the whole object: its message names the fields
        return f"{message}{suffix}"
    return f"field '{location}': {message}{suffix}"


MAX_CONFIG_BYTES = 1 << 20  # a spec or a config is a few hundred bytes; 1 MiB is no config


def load_yaml_file(path: str | Path, what: str) -> Any:
    """The YAML document in `path`, or a one-line ConfigError for every way reading it can fail
    (missing, a folder, unreadable, too large, not UTF-8, invalid or too deeply nested YAML).
    `what` names the file's kind in messages, e.g. "spec file"."""
    path = Path(path)
    fix = f"pass the path of a {what} in YAML"
    try:
        if not path.exists():
            raise ConfigError(f"{what} {path} not found; {fix}")
        if not path.is_file():
            raise ConfigError(f"{what} {path} is not a file; {fix}")
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{what} {path} is larger than 1 MiB, too large to be one; {fix}")
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read {what} {path}: {e.strerror or e}; {fix}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {path} is not UTF-8 text; {fix}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {str(e).splitlines()[0]}") from None
    except RecursionError:
        raise ConfigError(f"{path} nests its YAML too deeply to be a {what}; {fix}") from None
