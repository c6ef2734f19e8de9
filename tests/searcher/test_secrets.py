"""No password is printed, whatever its form, by any command or error path."""

from __future__ import annotations

import pytest
import yaml
from click.testing import CliRunner
from tiny import TINY_TRAIN

from searcher.cli import cli
from searcher.study.spec import STORAGE_ENV

SECRET = "Sup3rSecretPw"
# Nothing listens on port 1: every command fails to reach the database, on its error path.
FORMS = {
    "userinfo": f"postgresql+psycopg://dikd:{SECRET}@127.0.0.1:1/dikd",
    "query": f"postgresql+psycopg://dikd@127.0.0.1:1/dikd?password={SECRET}",
    "query-after-others": f"postgresql+psycopg://dikd@127.0.0.1:1/dikd?sslmode=disable&password={SECRET}",
    "libpq-keywords": f"host=127.0.0.1 port=1 user=dikd password={SECRET} dbname=dikd",
    "libpq-quoted": f"host=127.0.0.1 port=1 password='{SECRET} x' dbname=dikd",
}


def _commands(folder) -> dict[str, list[str]]:
    spec = folder / "s.yaml"
    spec.write_text(yaml.safe_dump({"name": "s", "train": TINY_TRAIN, "n_trials": 5}))
    return {
        "study list": ["study", "list"],
        "study show": ["study", "show", "s"],
        "study run": ["study", "run", str(spec)],
        "worker": ["worker", "s", "--quiet"],
        "confirm": ["confirm", "s"],
        "export": ["export", "s", "-o", str(folder / "x.yaml")],
        "report": ["report", "s", "-o", str(folder / "r.html")],
    }


@pytest.mark.parametrize("form", list(FORMS))
@pytest.mark.parametrize("via", ["option", "environment"])
def test_no_command_prints_a_storage_password(form, via, tmp_path, monkeypatch) -> None:
    url = FORMS[form]
    monkeypatch.setenv("DIKD_GRACE_PERIOD", "3")
    monkeypatch.setenv("DIKD_HEARTBEAT_INTERVAL", "1")
    for name, args in _commands(tmp_path).items():
        if via == "option":
            monkeypatch.delenv(STORAGE_ENV, raising=False)
            args = [*args, "--storage", url]
        else:
            monkeypatch.setenv(STORAGE_ENV, url)
        result = CliRunner().invoke(cli, args)
        output = result.output + (result.stderr if result.stderr_bytes is not None else "")
        assert result.exit_code != 0, (name, output)
        assert SECRET not in output, (name, output)
        assert result.exception is None or isinstance(result.exception, SystemExit), (
            name,
            repr(result.exception),
        )
