"""Malformed and odd study specs through `dikd study run`, in-process, training stood in.

Structure-aware mutations of the shipped specs (keys dropped, unknown keys, values of the wrong
type, NaN and huge numbers, empty and reversed ranges, bad choices) and raw text. Whatever the
input: no traceback; a rejected spec is one line with exit 2 and writes no study; no password
is printed. `FUZZ_EXAMPLES` raises the number of examples for a longer run.
"""

from __future__ import annotations

import copy
import math
import os
from pathlib import Path

import optuna
import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from tiny import TINY_TRAIN, stand_in_result

from searcher.cli import cli
from searcher.study import search

STUDIES = Path(__file__).resolve().parents[2] / "studies"
SHIPPED = [yaml.safe_load(p.read_text()) for p in sorted(STUDIES.glob("*.yaml"))]
SECRET = "Fuzz3dSecretPw"
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "150"))

odd_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -0.0, 0.5, 2.0]),
    st.text(max_size=12),
    st.lists(st.integers(-3, 3), max_size=3),
    st.fixed_dictionaries({"low": st.floats(-5, 5), "high": st.floats(-5, 5)}),
    st.fixed_dictionaries({"choices": st.lists(st.sampled_from([0, 1.5, "x", None]), max_size=3)}),
    st.just(f"postgresql://u:{SECRET}@127.0.0.1:1/d"),
)


def _paths(spec: dict, prefix: tuple = ()) -> list[tuple]:
    out = []
    for key, value in spec.items():
        out.append((*prefix, key))
        if isinstance(value, dict):
            out += _paths(value, (*prefix, key))
    return out


@st.composite
def mutated_specs(draw) -> dict:
    spec = copy.deepcopy(draw(st.sampled_from(SHIPPED)))
    spec["train"] = {**spec["train"], **TINY_TRAIN}  # small, and data this machine has
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(spec)))
        parent = spec
        for key in path[:-1]:
            parent = parent[key]
        action = draw(st.sampled_from(["drop", "replace", "add"]))
        if action == "drop":
            parent.pop(path[-1], None)
        elif action == "replace":
            parent[path[-1]] = draw(odd_values)
        else:
            parent[draw(st.text(min_size=1, max_size=8))] = draw(odd_values)
    return spec


def _run(text: str, folder: Path) -> None:
    spec_path = folder / "spec.yaml"
    spec_path.write_text(text, encoding="utf-8")
    database = folder / "fuzz.db"
    database.unlink(missing_ok=True)
    args = ["study", "run", str(spec_path), "--storage", f"sqlite:///{database}", "--n-trials", "2"]
    result = CliRunner().invoke(cli, args)
    output = result.output
    event(f"exit code {result.exit_code}")
    assert result.exit_code in (0, 1, 2), (result.exit_code, output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert SECRET not in output
    if result.exit_code == 2:
        assert output.startswith("error: ") and output.count("\n") == 1, output
        if database.exists():  # a rejected spec writes no study
            assert optuna.get_all_study_summaries(f"sqlite:///{database}") == []


def _stand_in(config, on_epoch=None):
    return stand_in_result(config, float(config.epochs), 0.5)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(autouse=True)
def _training_stood_in(monkeypatch):
    monkeypatch.setattr(search, "train", _stand_in)


FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@FUZZ
@given(spec=mutated_specs())
def test_mutated_specs_never_end_in_a_traceback(spec, folder) -> None:
    _run(yaml.safe_dump(spec, allow_unicode=True), folder)


@FUZZ
@given(text=st.one_of(st.text(max_size=200), st.just("[" * 5000 + "]" * 5000)))
def test_raw_text_specs_never_end_in_a_traceback(text, folder) -> None:
    _run(text, folder)
