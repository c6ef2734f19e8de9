"""The example users copy (examples/acme: its own CNN, Dataset and loop), tiny, end to end
through the CLI: search, confirmation, export, and the exported schedule applied again in the
same loop (ScheduledSteps) and in Lightning. Then the refusals of user code."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import yaml
from click.testing import CliRunner

from objectives import ALLOW_IMPORTS_ENV, _imports
from searcher.cli import cli
from searcher.study.confirmation_runs import confirmation_runs
from searcher.verdict.plan import first_seed

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "acme"
TINY_PARAMS = {"batch_size": 64, "train_size": 256, "val_size": 200, "test_size": 200}
STEPS_PER_EPOCH = 256 // 64


@pytest.fixture
def acme(monkeypatch, tmp_path):
    """acme importable (as from its folder), nothing allowed, and a tiny spec of the example's
    in `tmp_path`; returns (spec path, storage URL)."""
    monkeypatch.syspath_prepend(str(EXAMPLE))
    monkeypatch.setattr(_imports, "_allowed", set())
    monkeypatch.delenv(ALLOW_IMPORTS_ENV, raising=False)
    spec = yaml.safe_load((EXAMPLE / "study.yaml").read_text())
    url = f"sqlite:///{tmp_path / 'acme.db'}"
    spec.update(
        storage=url,
        n_trials=4,
        baseline={"fractions": [0.5, 1.0]},
        sampler={"name": "random", "seed": 0},
        space={"policy": "deterministic", "frequency": {"low": 0.5, "high": 0.9}, "scale": 2.0,
               "kernel_pool": {"choices": [True, False]}},
    )  # fmt: skip
    spec["train"].update(params=TINY_PARAMS, epochs=2)
    path = tmp_path / "acme.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path, url


def _dikd(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def _forbid_again(monkeypatch) -> None:
    """A new process: what `study run FILE` allowed in this one is forgotten."""
    monkeypatch.setattr(_imports, "_allowed", set())


def test_the_example_searched_confirmed_exported_and_applied_again(acme, monkeypatch, tmp_path):
    spec, url = acme
    run = _dikd("study", "run", str(spec))  # the file allows its own package, acme
    assert run.exit_code == 0, run.output
    study = optuna.load_study(study_name="acme", storage=url)
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 4
    search = [t for t in trials if t.user_attrs["role"] == "search"]
    for t in search:  # what the loop ran: its steps, some reduced, FLOPs counted
        assert t.user_attrs["total_steps"] == 2 * STEPS_PER_EPOCH
        assert 0 < t.user_attrs["reduced_steps"] < t.user_attrs["total_steps"]
        assert t.user_attrs["train_config"]["loop"] == "acme.train:run"
    candidate = max(search, key=lambda t: t.values[1]).number

    _forbid_again(monkeypatch)  # a study named from the database: nothing of it is allowed
    refused = _dikd("confirm", "acme", "--storage", url, "--trial", str(candidate))
    assert refused.exit_code == 2
    assert f"set {ALLOW_IMPORTS_ENV}=acme (or pass --allow-imports acme)" in refused.output
    assert not confirmation_runs(study)  # nothing trained

    confirm = _dikd("confirm", "acme", "--storage", url, "--trial", str(candidate),
                    "--min-seeds", "2", "--max-seeds", "2", "--allow-imports", "acme")  # fmt: skip
    assert confirm.exit_code == 0, confirm.output
    runs = confirmation_runs(study)
    assert runs and all(t.user_attrs["test_accuracy"] is not None for t in runs)
    first = first_seed(study)  # the study's own fresh seeds
    assert {t.user_attrs["train_config"]["seed"] for t in runs} == {first, first + 1}

    pick = tmp_path / "pick.yaml"
    export = _dikd("export", "acme", "--storage", url, "--pick", f"trial:{candidate}",
                   "-o", str(pick))  # fmt: skip
    assert export.exit_code == 0, export.output
    document = yaml.safe_load(pick.read_text())
    schedule = document["train"]["schedule"]  # what a loop of your own needs
    assert schedule["policy"] == "deterministic" and document["train"]["loop"] == "acme.train:run"

    # The exported file re-runs with `dikd train --config` (its loop, allowed by the option).
    retrain = _dikd("train", "--config", str(pick), "--allow-imports", "acme")
    assert retrain.exit_code == 0, retrain.output
    exported = next(t for t in search if t.number == candidate)
    assert f"reduced_steps={exported.user_attrs['reduced_steps']}/" in retrain.output
    assert "test_accuracy=" in retrain.output  # the first confirmation seed's run, test scored

    # The same loop, applying the pick by itself (ScheduledSteps): reduced steps downsampled.
    from acme import model as acme_model
    from acme.train import run_pick

    widths: list[int] = []
    original = acme_model.AcmeNet.forward

    def recording(self, x):
        if self.training:
            widths.append(x.shape[-1])
        return original(self, x)

    monkeypatch.setattr(acme_model.AcmeNet, "forward", recording)
    from objectives import Schedule

    expected = Schedule.from_dict(schedule)
    total = 2 * STEPS_PER_EPOCH
    scores = run_pick(str(pick), epochs=2, params=TINY_PARAMS)
    assert all(0 <= v <= 1 for v in scores.values())
    assert widths == [14 if expected.is_reduced(i, total) else 28 for i in range(total)]

    # And in Lightning, with the callback.
    pytest.importorskip("lightning")
    from acme.lightning import fit_pick

    widths.clear()
    fit_pick(str(pick), epochs=2, params=TINY_PARAMS, accelerator="cpu", logger=False,
                       enable_checkpointing=False, enable_progress_bar=False,
                       enable_model_summary=False, num_sanity_val_steps=0)  # fmt: skip
    assert widths == [14 if expected.is_reduced(i, total) else 28 for i in range(total)]


def test_a_worker_refuses_a_study_whose_code_it_was_not_allowed(acme, monkeypatch) -> None:
    spec, url = acme
    assert _dikd("study", "run", str(spec), "--n-trials", "1").exit_code == 0
    _forbid_again(monkeypatch)
    before = len(optuna.load_study(study_name="acme", storage=url).trials)
    shown = _dikd("study", "show", "acme", "--storage", url)  # reading a study imports nothing
    assert shown.exit_code == 0 and "acme" not in _imports.allowed_packages()
    worker = _dikd("worker", "acme", "--storage", url, "--quiet")
    assert worker.exit_code == 2
    assert "would import package 'acme'" in worker.output and "DIKD_ALLOW_IMPORTS" in worker.output
    assert len(optuna.load_study(study_name="acme", storage=url).trials) == before


@pytest.mark.parametrize(
    ("loop", "message"),
    [
        ("acme.nowhere:run", "does not import"),
        ("acme.train:missing", "has no attribute 'missing'"),
        ("acme.train:build", "cannot be called as fn(ctx)"),
        ("acme.train:DEFAULTS", "is a dict, not a function"),
    ],
)
def test_a_spec_whose_loop_cannot_be_used_stores_nothing(acme, loop, message) -> None:
    spec, url = acme
    data = yaml.safe_load(spec.read_text())
    data["train"]["loop"] = loop
    spec.write_text(yaml.safe_dump(data))
    run = _dikd("study", "run", str(spec))
    assert run.exit_code == 2 and message in run.output and "field 'train.loop'" in run.output
    assert optuna.get_all_study_summaries(url, include_best_trial=False) == []


def test_local_workers_inherit_what_study_run_allowed(monkeypatch) -> None:
    from searcher.views.run_progress import _worker_env

    monkeypatch.setattr(_imports, "_allowed", set())
    monkeypatch.delenv(ALLOW_IMPORTS_ENV, raising=False)
    assert ALLOW_IMPORTS_ENV not in _worker_env("sqlite:///x.db", None, 1)
    _imports.allow_imports(["acme", "other"])
    assert _worker_env("sqlite:///x.db", None, 1)[ALLOW_IMPORTS_ENV] == "acme,other"
