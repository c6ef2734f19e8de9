"""The deployment in docker/, checked without a container engine: compose.yaml parses and names
the right images, commands, volumes, ports and variables, and the worker image's entry command
is the `dikd worker` the worker tests run."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import sqlalchemy
import yaml

from searcher.cli import cli

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
_VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def load_compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def env_example() -> dict[str, str]:
    values = {}
    for line in (DOCKER / ".env.example").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def interpolate(value, env: dict[str, str]):
    """Compose's variable substitution: ${VAR}, ${VAR:-default}, ${VAR:?error}, $$ for $."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        current = env.get(name)
        if op and op.endswith("-") and not current:
            return arg
        if op and op.endswith("?") and not current:
            raise KeyError(f"{name}: {arg}")
        return current or ""

    return _VARIABLE.sub(substitute, value.replace("$$", "\0")).replace("\0", "$")


def variables(value) -> set[str]:
    text = json.dumps(value)
    return {m["name"] for m in _VARIABLE.finditer(text.replace("$$", ""))}


def dockerfile_instruction(name: str) -> list[str]:
    """The last `NAME [...]` of the worker Dockerfile, in exec (JSON) form."""
    lines = (DOCKER / "Dockerfile.worker").read_text().splitlines()
    found = [line for line in lines if line.upper().startswith(name + " ")]
    assert found, f"Dockerfile.worker has no {name}"
    return json.loads(found[-1][len(name) :].strip())


def test_compose_has_the_three_services_and_named_volumes():
    compose = load_compose()
    assert set(compose["services"]) == {"postgres", "dashboard", "worker"}
    assert set(compose["volumes"]) == {"pgdata", "data"}
    postgres = compose["services"]["postgres"]
    assert postgres["image"].startswith("postgres:")
    assert "pgdata:/var/lib/postgresql/data" in postgres["volumes"]
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert "data:/home/dikd/.cache/dikd" in compose["services"]["worker"]["volumes"]


def test_dashboard_runs_dikd_dashboard_published_on_loopback_only():
    dashboard = load_compose()["services"]["dashboard"]
    command = dashboard["entrypoint"] + dashboard["command"]
    assert command[:2] == ["dikd", "dashboard"]
    assert command[command.index("--host") + 1] == "0.0.0.0"
    assert dashboard["ports"] == ["127.0.0.1:8080:8080"]
    assert dashboard["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_every_published_port_binds_loopback_by_default():
    for name, service in load_compose()["services"].items():
        for port in interpolate(service.get("ports", []), {}):  # .env does not set a bind
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
    assert env_example()["POSTGRES_BIND"] == "127.0.0.1"


def test_worker_uses_the_image_entry_command_with_gpu_reservations():
    worker = load_compose()["services"]["worker"]
    assert worker["build"] == {"context": "..", "dockerfile": "docker/Dockerfile.worker"}
    assert "entrypoint" not in worker  # the image's `dikd worker`
    assert worker["command"] == ["${DIKD_STUDY:?set DIKD_STUDY in docker/.env}"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert worker["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert worker["restart"] == "on-failure"


def test_storage_url_is_built_from_the_env_credentials():
    compose = load_compose()
    env = env_example()
    resolved = interpolate(compose, env)
    for name in ("dashboard", "worker"):
        url = sqlalchemy.engine.make_url(resolved["services"][name]["environment"]["DIKD_STORAGE"])
        assert (url.drivername, url.host, url.port) == ("postgresql+psycopg", "postgres", 5432)
        assert url.username == env["POSTGRES_USER"] and url.database == env["POSTGRES_DB"]
        assert url.password == env["POSTGRES_PASSWORD"]
    postgres = resolved["services"]["postgres"]["environment"]
    assert postgres == {k: env[k] for k in ("POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB")}
    assert resolved["services"]["worker"]["command"] == [env["DIKD_STUDY"]]
    with pytest.raises(KeyError, match="POSTGRES_PASSWORD"):  # no .env: compose refuses
        interpolate(compose, {k: v for k, v in env.items() if k != "POSTGRES_PASSWORD"})


def test_env_example_defines_every_variable_with_placeholders_only():
    env = env_example()
    assert variables(load_compose()) <= set(env)
    assert "change-me" in env["POSTGRES_PASSWORD"]
    assert ".env" in (DOCKER / ".gitignore").read_text().split()
    for text in ((DOCKER / "compose.yaml").read_text(), (DOCKER / "Dockerfile.worker").read_text()):
        assert env["POSTGRES_PASSWORD"] not in text  # credentials only through variables


def test_worker_image_is_cuda_pytorch_and_its_entry_command_is_dikd_worker():
    text = (DOCKER / "Dockerfile.worker").read_text()
    base = re.search(r"^ARG BASE_IMAGE=(\S+)", text, re.M)[1]
    assert base.startswith("pytorch/pytorch:") and "cuda" in base
    assert re.search(r"pip install .*\"\.\[postgres\]\"", text)
    assert dockerfile_instruction("ENTRYPOINT") == ["dikd", "worker"]
    # The same command the worker tests run: the project's `dikd` script, its `worker` command.
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^\[project\.scripts\]\ndikd = "searcher\.cli:main"$', pyproject, re.M)
    assert "worker" in cli.commands
    assert "--storage" in [opt for p in cli.commands["worker"].params for opt in p.opts]


def test_build_context_sends_only_the_project():
    ignore = (DOCKER / "Dockerfile.worker.dockerignore").read_text().split()
    assert ignore[ignore.index("*") :][:1] == ["*"]
    copied = re.findall(r"^COPY (.+) \S+$", (DOCKER / "Dockerfile.worker").read_text(), re.M)
    for sources in copied:
        for source in shlex.split(sources):
            assert f"!{source}" in ignore or f"!{source}/" in ignore, source
