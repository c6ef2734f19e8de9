"""The user's own code by name: import paths `package.module:callable` (as entry points are
written) and the names installed packages publish through entry points.

An import runs code. A study's spec is read by every worker from a shared database, so whoever
can write there could otherwise run code on every worker's machine. A path is therefore imported
only when its top-level package is allowed by the person who started the process:
`DIKD_ALLOW_IMPORTS=acme,other`, or `allow_imports(...)` (the CLI's `--allow-imports`; `dikd
study run` of a spec file allows the paths that file names). Entry points obey the same rule,
by the package their value names. Anything else is a one-line ConfigError naming the package
and the setting, raised before anything is imported.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import re
import sys
from collections.abc import Callable, Iterable
from typing import Any

from objectives._errors import ConfigError

ALLOW_ENV = "DIKD_ALLOW_IMPORTS"
MODEL_GROUP = "dikd.models"
DATASET_GROUP = "dikd.datasets"

_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]*"
_IMPORT_PATH = re.compile(rf"{_IDENTIFIER}(\.{_IDENTIFIER})*:{_IDENTIFIER}(\.{_IDENTIFIER})*")

_allowed: set[str] = set()  # packages allowed in this process besides $DIKD_ALLOW_IMPORTS


def is_import_path(text: str) -> bool:
    """Whether `text` is written as an import path, `package.module:attribute`."""
    return bool(_IMPORT_PATH.fullmatch(text))


def top_package(path: str) -> str:
    """The top-level package an import path (or an entry point's value) imports."""
    return path.partition(":")[0].split(".")[0].strip()


def allow_imports(packages: Iterable[str]) -> None:
    """Allow this process to import these top-level packages (and their submodules)."""
    _allowed.update(p.strip() for p in packages if p.strip())


def allowed_packages() -> set[str]:
    """The top-level packages this process may import user code from."""
    from_env = os.environ.get(ALLOW_ENV, "")
    return _allowed | {p.strip() for p in from_env.split(",") if p.strip()}


def check_allowed(path: str, field: str) -> None:
    """A one-line ConfigError unless `path`'s top-level package is allowed here."""
    package = top_package(path)
    if package not in allowed_packages():
        raise ConfigError(
            f"field '{field}': {path} would import package '{package}', which this process does "
            f"not allow; if you trust the study's spec, set {ALLOW_ENV}={package} "
            f"(or pass --allow-imports {package})"
        )


def import_object(path: str, field: str) -> Any:
    """The object an allowed import path names, or a one-line ConfigError saying what failed."""
    if not is_import_path(path):
        raise ConfigError(
            f"field '{field}': {path!r} is not an import path; write package.module:name"
        )
    check_allowed(path, field)
    module_name, _, attribute = path.partition(":")
    # As `python -m` and uvicorn do: the folder the command runs in is importable, so a
    # project's own package works without installing it.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        raise ConfigError(
            f"field '{field}': {path} does not import ({e}); install its package or run dikd "
            "from the folder that holds it"
        ) from None
    except Exception as e:
        raise ConfigError(
            f"field '{field}': importing {module_name} raised {type(e).__name__}: {e}"
        ) from None
    target: Any = module
    for name in attribute.split("."):
        if not hasattr(target, name):
            raise ConfigError(
                f"field '{field}': {module_name} has no attribute {attribute!r}; check the "
                "name after ':'"
            )
        target = getattr(target, name)
    return target


def import_callable(path: str, field: str) -> Callable[..., Any]:
    target = import_object(path, field)
    if not callable(target):
        raise ConfigError(
            f"field '{field}': {path} is a {type(target).__name__}, not a function or class; "
            "name a callable"
        )
    return target


def entry_points(group: str) -> dict[str, importlib.metadata.EntryPoint]:
    """The names installed packages publish in `group`, by name."""
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=group)}


def load_entry_point(group: str, name: str, field: str) -> Callable[..., Any]:
    """The callable an installed package publishes as `name` in `group`, under the same rule as
    an import path."""
    ep = entry_points(group)[name]
    return import_callable(ep.value.split("[")[0].strip(), field)  # no extras


def user_import_paths(config: Any) -> list[str]:
    """The import paths (or entry points' values) a TrainConfig names: its loop, and its model
    and data when they are the user's; `dikd study run FILE` allows their packages."""
    from objectives._data import is_registered  # a leaf module: imported only when needed

    paths = [config.loop] if getattr(config, "loop", None) else []
    for group, name in ((MODEL_GROUP, config.model), (DATASET_GROUP, config.data)):
        if group == DATASET_GROUP and is_registered(name):
            continue  # imagefolder:path is a registered data set, not an import path
        if is_import_path(name):
            paths.append(name)
        elif name in entry_points(group):
            paths.append(entry_points(group)[name].value)
    return paths


def user_packages(config: Any) -> set[str]:
    """The top-level packages whose code a TrainConfig runs (see `user_import_paths`)."""
    return {top_package(path) for path in user_import_paths(config)}
