"""The study specs that ship with dikd (`studies/*.yaml`, package data), found by name, so
that `dikd study run quickstart` works from any folder after `pip install .`."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import click

from objectives import ConfigError
from searcher.study.spec import StudySpec, load_spec

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

SUFFIX = ".yaml"


def shipped_specs() -> dict[str, Traversable]:
    """The shipped spec files by name (the file name without .yaml), sorted."""
    files = [f for f in resources.files("studies").iterdir() if f.name.endswith(SUFFIX)]
    return {f.name.removesuffix(SUFFIX): f for f in sorted(files, key=lambda f: f.name)}


def spec_summary(spec_file: Traversable) -> str:
    """The first comment line of a spec file: what it is."""
    for line in spec_file.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            return line.lstrip("#").strip()
    return ""


def find_spec(name_or_path: str) -> Traversable | Path:
    """The spec file at `name_or_path`, else the shipped spec of that name (a folder of the
    same name, such as the quickstart's output, does not hide it)."""
    path = Path(name_or_path)
    shipped = shipped_specs()
    spec_file = shipped.get(name_or_path.removesuffix(SUFFIX))
    if path.is_file() or (spec_file is None and path.exists()):
        return path  # a folder or an unreadable file: load_spec says what is wrong with it
    if spec_file is None:
        raise ConfigError(
            f"study spec {name_or_path} not found; pass a spec file's path or the name of a "
            f"shipped spec ({', '.join(shipped)}; `dikd specs` describes them)"
        )
    return spec_file


def load_spec_file(name_or_path: str) -> StudySpec:
    """Load a spec by path, or by the name of a shipped one."""
    found = find_spec(name_or_path)
    if isinstance(found, Path):
        return load_spec(found)
    with resources.as_file(found) as path:
        return load_spec(path)


@click.command("specs")
@click.argument("name", required=False)
def specs_command(name: str | None) -> None:
    """List the shipped study specs; with NAME, print that spec (to copy and edit)."""
    shipped = shipped_specs()
    if name is None:
        width = max(map(len, shipped))
        click.echo("\n".join(f"{n:<{width}}  {spec_summary(f)}" for n, f in shipped.items()))
    elif name in shipped:
        click.echo(shipped[name].read_text(encoding="utf-8"), nl=False)
    else:
        raise ConfigError(f"no shipped spec '{name}'; choose one of {', '.join(shipped)}")
