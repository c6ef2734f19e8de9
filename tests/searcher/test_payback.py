"""The answer cost and the payback, from stored trials with known costs; and the new way's
pieces end to end with training stood in: a cheaper search fidelity, enqueued schedules, one
read-point plain run a seed, each study's own confirmation seeds."""

from __future__ import annotations

import re

import optuna
import pytest
import yaml
from click.testing import CliRunner
from optuna.trial import TrialState, create_trial
from tiny import TINY_TRAIN, stand_in_result, tiny_spec

from searcher.cli import cli
from searcher.study import search
from searcher.study.confirmation_runs import confirmation_runs
from searcher.study.record import (
    BASELINE,
    BUDGET_FRACTION,
    CANDIDATE,
    CONFIRM,
    CONFIRM_RUN,
    FIRST_SEED_ATTR,
    PARTIAL,
    PRUNED_REASON,
    ROLE,
    SEARCH,
    TRAIN_CONFIG,
    VERDICT_ATTR,
    candidate_of,
    stored_config,
)
from searcher.verdict import confirmation
from searcher.verdict.confirmation import completed_runs
from searcher.verdict.payback import payback
from searcher.verdict.plan import PLACEMENT_MARGIN, first_seed


def _study_with(trials: list[dict]) -> optuna.Study:
    study = optuna.create_study(directions=["minimize", "maximize"])
    for t in trials:
        state = t.pop("state", TrialState.COMPLETE)
        values = t.pop("values", None)
        study.add_trial(create_trial(state=state, values=values, user_attrs=t))
    return study


def _baseline(fraction: float, cost: float) -> dict:
    return {ROLE: BASELINE, BUDGET_FRACTION: fraction, "values": [cost, 0.5 + 0.3 * fraction]}


SEARCH_TRIALS = [
    _baseline(0.5, 20.0),
    _baseline(1.0, 40.0),
    {ROLE: SEARCH, "values": [25.0, 0.8]},
    # stopped by a pruner after costing 12; failed (no cost recorded); never ran (over budget)
    {ROLE: SEARCH, "state": TrialState.PRUNED, PRUNED_REASON: "dominance",
     PARTIAL: {"planned_epochs": 4, "points": [{"epoch": 1, "cost": 5.0, "val_accuracy": 0.3},
                                               {"epoch": 2, "cost": 12.0, "val_accuracy": 0.4}]}},
    {ROLE: SEARCH, "state": TrialState.FAIL},
    {ROLE: SEARCH, "state": TrialState.PRUNED, "over_budget": True},
]  # fmt: skip


def _confirm_run(key: str, cost: float, *, candidate=None, fraction=None, steps=None) -> dict:
    attrs = {ROLE: CONFIRM, CONFIRM_RUN: key, CANDIDATE: candidate, "values": [cost, 0.8]}
    if fraction is not None:
        attrs[BUDGET_FRACTION] = fraction
    if steps is not None:
        attrs[TRAIN_CONFIG] = {"step_fraction": steps}
    return attrs


def test_answer_cost_counts_every_run_pruned_ones_up_to_their_stop_in_search_full_runs() -> None:
    result = payback(_study_with([dict(t) for t in SEARCH_TRIALS]))
    assert result.cost == pytest.approx(20 + 40 + 25 + 12)
    assert result.unit == 40.0 and result.unit_source == "the search's full baseline"
    assert result.answer_cost == pytest.approx(97 / 40)
    assert result.text() == "answer cost 2.4 full runs; payback: none, no confirmed win"


def test_the_unit_is_the_confirmations_full_runs_else_its_plain_runs_per_step() -> None:
    full = [
        _confirm_run("seed 1: trial 2", 30.0, candidate=2),
        _confirm_run("seed 1: plain 1.0", 50.0, fraction=1.0),
        _confirm_run("seed 2: plain 1.0", 54.0, fraction=1.0),
        _confirm_run("seed 1: plain 0.5", 26.0, fraction=0.5),
    ]
    result = payback(_study_with([dict(t) for t in SEARCH_TRIALS] + full))
    assert result.unit == pytest.approx(52.0)
    assert result.cost == pytest.approx(97 + 30 + 50 + 54 + 26)
    steps = [
        _confirm_run("seed 1: plain steps 0.8000", 40.0, steps=0.8),
        _confirm_run("seed 2: plain steps 0.8000", 44.0, steps=0.8),
    ]
    result = payback(_study_with([dict(t) for t in SEARCH_TRIALS] + steps))
    assert result.unit == pytest.approx((50 + 55) / 2)
    assert result.unit_source == "the confirmation's plain runs, per step"


def _with_verdicts(verdicts: dict, min_saving: float = 0.05) -> optuna.Study:
    study = _study_with([dict(t) for t in SEARCH_TRIALS])  # answer cost 97 / 40 = 2.425
    study.set_user_attr(
        VERDICT_ATTR,
        {"settings": {"min_saving": min_saving}, "candidates": verdicts, "procedure": "p"},
    )
    return study


def _verdict(kind: str, low_pp: float, speedup: tuple[float, float, float] | None) -> dict:
    v = {"verdict": kind, "statistic_pp": {"mean": low_pp + 1, "low": low_pp, "high": 5.0}}
    v["effective_speedup"] = (
        None if speedup is None else dict(zip(("mean", "low", "high"), speedup))
    )
    return v


def test_payback_is_the_answer_cost_over_the_winners_saving_with_its_interval() -> None:
    study = _with_verdicts(
        {
            "2": _verdict("win", 0.5, (1.25, 1.1, 2.0)),
            "3": _verdict("win", 1.5, (1.44, 1.28, 1.62)),  # the higher bound: the winner
            "4": _verdict("undecided", 3.0, (3.0, 0.5, 9.0)),
        }
    )
    result = payback(study)
    answer = 97 / 40
    saving = (1 - 1 / 1.44, 1 - 1 / 1.28, 1 - 1 / 1.62)
    assert result.winner == 3
    assert result.saving == pytest.approx(saving)
    assert result.trainings == pytest.approx(
        (answer / saving[0], answer / saving[2], answer / saving[1])
    )
    assert re.fullmatch(
        r"answer cost 2\.4 full runs; payback 8 trainings \[6, 11\] \(trial 3 saves 31% "
        r"\[22%, 38%\] of a training\)",
        result.text(),
    )


def test_the_paybacks_low_end_is_floored_at_the_saving_the_verdict_tested() -> None:
    result = payback(_with_verdicts({"2": _verdict("win", 0.5, (1.56, 0.96, 2.55))}))
    assert result.saving[1] == pytest.approx(0.05)  # a win saves at least min_saving
    assert result.trainings[2] == pytest.approx(97 / 40 / 0.05)
    assert result.text().startswith("answer cost 2.4 full runs; payback 7 trainings [4, 48]")
    read_point = _verdict("win", 0.5, (1.1, 1.1, 1.1)) | {"plain_steps": 0.7}
    bound = payback(_with_verdicts({"2": read_point}))
    assert bound.text().startswith("answer cost 2.4 full runs; payback at most 27 trainings")
    assert "saves at least 9%" in bound.text()
    none = payback(_with_verdicts({"2": _verdict("undecided", -1.0, (1.2, 0.9, 1.5))}))
    assert none.trainings is None and none.text().endswith("payback: none, no confirmed win")


# End to end, training stood in: the full fidelity has 600 images and costs 100 a full run,
# the search's 150 images a quarter of that; a schedule costs 0.6 of the plain model and beats
# it clearly; the plain model's accuracy rises with its share of the steps.
FULL_COST = 100.0


def _stand_in(config, on_epoch=None):
    share = config.step_fraction * config.epochs / TINY_TRAIN["epochs"]
    scheduled = config.schedule.policy != "none"
    cost = FULL_COST * share * (config.subset / 600) * (0.6 if scheduled else 1.0)
    accuracy = 0.9 + 0.001 * (config.seed % 3) if scheduled else 0.5 + 0.2 * share
    result = stand_in_result(config, cost, accuracy)
    result.test_accuracy, result.test_size = accuracy, 10_000
    return result


def test_new_way_end_to_end_with_training_stood_in(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(search, "train", _stand_in)
    monkeypatch.setattr(confirmation, "train", _stand_in)
    monkeypatch.setattr(confirmation, "check_data", lambda config: None)
    monkeypatch.setattr("searcher.cli.check_data", lambda config: None)
    enqueued = {"policy": "deterministic", "frequency": 0.5, "scale": 2.0}
    spec = tiny_spec(
        "new",
        search_fidelity={"subset": 150},
        enqueue=[enqueued],
        space={**tiny_spec("x")["space"], "policy": {"choices": ["deterministic"]}},
    )
    url = f"sqlite:///{tmp_path / 'new.db'}"
    (tmp_path / "new.yaml").write_text(yaml.safe_dump({**spec, "storage": url}))
    runner = CliRunner()
    run = runner.invoke(cli, ["study", "run", str(tmp_path / "new.yaml")], catch_exceptions=False)
    assert run.exit_code == 0, run.output
    # Before a confirmation the unit is the search's own full baseline (a quarter of the data)
    assert (
        "answer cost 2.1 full runs of the search's fidelity (a confirmation gives the full "
        "one); payback: none, no confirmed win"
    ) in run.output
    study = optuna.load_study(study_name="new", storage=url)
    trials = study.get_trials(deepcopy=False)
    assert trials[2].params == enqueued  # the known-good schedule before the sampler's own
    assert all(stored_config(t)["subset"] == 150 for t in trials)  # the search's fidelity

    confirmed = runner.invoke(cli, ["confirm", "new", "--storage", url, "--max-seeds", "4"])
    assert confirmed.exit_code == 0, confirmed.output
    study = optuna.load_study(study_name="new", storage=url)
    runs = list(completed_runs(confirmation_runs(study)).values())  # in the sibling study
    first = first_seed(study)
    assert first >= 10_000 and study.user_attrs[FIRST_SEED_ATTR] == first
    share = round(0.6 / 0.95 * (1 + PLACEMENT_MARGIN), 4)
    assert sorted(r.user_attrs[CONFIRM_RUN] for r in runs) == sorted(
        f"seed {first + i}: {what}"
        for i in range(3)
        for what in ("trial 2", f"plain steps {share:.4f}")
    )
    for r in runs:  # the confirmation trains at full fidelity
        config = stored_config(r)
        assert config["subset"] == 600
        assert config["step_fraction"] == (1.0 if candidate_of(r) is not None else share)
    assert "win at 3 seeds" in confirmed.output
    # Search: baselines 12.5 + 25, schedule 15; confirmation: 3 x (60 + 100 x share); the unit,
    # from the plain runs' cost per step: 100.
    answer = (12.5 + 25 + 15 + 3 * (60 + FULL_COST * share)) / FULL_COST
    assert payback(study).answer_cost == pytest.approx(answer)
    assert f"answer cost {answer:.1f} full runs; payback at most " in confirmed.output
    shown = runner.invoke(cli, ["study", "show", "new", "--storage", url])
    assert f"answer cost {answer:.1f} full runs; payback " in shown.output
    out = tmp_path / "best.yaml"
    exported = runner.invoke(cli, ["export", "new", "--storage", url, "-o", str(out)])
    assert exported.exit_code == 0, exported.output
    document = yaml.safe_load(out.read_text())
    assert document["train"]["subset"] == 600 and document["train"]["seed"] == first
    assert document["payback"]["answer_cost_full_runs"] == pytest.approx(answer)
    assert "payback" in exported.output


def test_an_enqueued_schedule_must_fit_the_space() -> None:
    from objectives import ConfigError
    from searcher.study.spec import parse_spec

    with pytest.raises(ConfigError, match=r"enqueue\[0\]: scale=3.0 is outside the space"):
        parse_spec(tiny_spec("x", enqueue=[{"policy": "deterministic", "frequency": 0.5,
                                             "scale": 3.0}]))  # fmt: skip
    with pytest.raises(ConfigError, match="give exactly the searched fields"):
        parse_spec(tiny_spec("x", enqueue=[{"policy": "deterministic"}]))
