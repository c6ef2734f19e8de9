"""The numbers the service prints, on hand-built trials with known answers."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState, create_trial

from searcher import BudgetCurve, PickError, derived_metrics, pareto_front, pick
from searcher.study.search import baseline_fractions
from searcher.study.spec import load_spec, parse_spec
from searcher.verdict.front import completed

# The plain model: 10 s -> 70%, 20 s -> 80%, 40 s -> 85% (the full budget).
CURVE = [(10.0, 0.70, 0.25), (20.0, 0.80, 0.5), (40.0, 0.85, 1.0)]


def baseline(cost: float, accuracy: float, fraction: float) -> optuna.trial.FrozenTrial:
    attrs = {"role": "baseline", "budget_fraction": fraction, "device": "cpu", "epochs": 8}
    return create_trial(values=[cost, accuracy], user_attrs=attrs)


def search(cost: float, accuracy: float) -> optuna.trial.FrozenTrial:
    return create_trial(values=[cost, accuracy], user_attrs={"role": "search", "device": "cpu"})


def make_study(*trials: optuna.trial.FrozenTrial) -> optuna.Study:
    study = optuna.create_study(directions=["minimize", "maximize"], study_name="s")
    study.add_trials([baseline(*point) for point in CURVE])
    study.add_trials(list(trials))
    return study


def test_budget_curve_of_the_baseline_trials():
    study = make_study()
    curve = BudgetCurve.from_trials(study.trials)
    assert curve.cost_to_reach(0.75) == pytest.approx(15.0)
    assert curve.cost_to_reach(0.825) == pytest.approx(30.0)
    assert curve.cost_to_reach(0.65) == pytest.approx(5.0)  # the first segment, extended
    assert curve.cost_to_reach(0.90) == 40.0  # above the best: the full cost, a lower bound
    assert curve.accuracy_at(30.0) == pytest.approx(0.825)
    assert (curve.full_cost, curve.full_accuracy) == (40.0, 0.85)


def test_curve_is_made_monotone():
    curve = BudgetCurve.from_points([(10, 0.7), (20, 0.8), (30, 0.78), (40, 0.85)], (40, 0.85))
    assert curve.accuracies == (0.7, 0.8, 0.8, 0.85)


def test_effective_speedup_and_beating_the_curve():
    winner, loser = search(20.0, 0.825), search(20.0, 0.75)
    study = make_study(winner, loser)
    trials = study.trials
    better = derived_metrics(trials[3], trials)
    assert better["effective_speedup"] == pytest.approx(30.0 / 20.0)
    assert better["speedup"] == pytest.approx(2.0)
    assert better["accuracy_change_pp"] == pytest.approx(-2.5)
    assert better["beats_curve"] is True
    worse = derived_metrics(trials[4], trials)
    assert worse["effective_speedup"] == pytest.approx(15.0 / 20.0)
    assert worse["beats_curve"] is False
    # more accurate than every baseline and cheaper than the full one: a lower bound
    best = make_study(search(30.0, 0.9)).trials
    assert derived_metrics(best[3], best)["effective_speedup"] == pytest.approx(40.0 / 30.0)


def test_fastest_within_picks_only_trials_that_beat_the_curve():
    study = make_study(search(12.0, 0.72), search(30.0, 0.845), search(25.0, 0.84))
    # 3 is fastest but below the curve; 4 (-0.5 pp) and 5 (-1 pp) beat it; 5 is faster
    assert pick(study, "fastest-within:0.5").number == 4
    assert pick(study, "fastest-within:2").number == 5
    assert pick(study, "most-accurate").number == 2  # the full baseline, 85%
    with pytest.raises(PickError, match="plain model at 8 epochs"):
        pick(make_study(search(12.0, 0.72)), "fastest-within:0.5")


def test_knee_is_the_front_point_farthest_from_the_chord():
    study = make_study(search(12.0, 0.80))
    assert [t.number for t in pareto_front(study.trials)] == [0, 3, 2]  # 3 dominates 1
    assert pick(study, "knee").number == 3


def test_failed_and_running_trials_are_ignored():
    failed = create_trial(state=TrialState.FAIL, user_attrs={"role": "search"})
    study = make_study(failed)
    assert len(pareto_front(study.trials)) == 3
    with pytest.raises(PickError, match="not a completed trial"):
        pick(study, "trial:3")


def test_baseline_budgets_are_never_trained_twice():
    spec = parse_spec({"name": "x", "train": {"epochs": 2}, "n_trials": 9})
    assert baseline_fractions(spec) == [0.5, 1.0]  # 1/4 and 1/2 of 2 epochs are both 1 epoch
    spec = parse_spec({"name": "x", "train": {"epochs": 8}, "n_trials": 9})
    assert baseline_fractions(spec) == [0.25, 0.5, 0.75, 1.0]


@pytest.mark.parametrize("path", sorted(Path(__file__).parents[2].glob("studies/*.yaml")))
def test_every_shipped_spec_loads(path):
    spec = load_spec(path)
    assert spec.n_trials > len(baseline_fractions(spec))


def test_curve_keeps_the_better_of_two_baselines_at_one_cost_and_is_monotone() -> None:
    curve = BudgetCurve.from_points([(10.0, 0.70), (10.0, 0.74), (20.0, 0.72), (30.0, 0.80)],
                                    (30.0, 0.80))  # fmt: skip
    assert curve.accuracy_at(10.0) == 0.74
    assert curve.accuracies == (0.74, 0.74, 0.80)  # the dip at 20 is not the plain model's best
    assert curve.accuracy_at(25.0) == pytest.approx(0.77)
    assert curve.accuracy_at(9.99) == 0.74  # the flat first segment, extended
    assert curve.accuracy_at(40.0) == pytest.approx(0.86)  # the last segment, extended
    assert curve.cost_to_reach(0.60) == 0.0 and curve.cost_to_reach(0.81) == 30.0


# --- the curve's edges, ties, devices and picks (mutation testing's findings) ------------------


def test_accuracy_at_and_cost_to_reach_are_exact_on_the_curve_and_its_ends() -> None:
    curve = BudgetCurve.from_points([(p[0], p[1]) for p in CURVE], (40.0, 0.85))
    assert curve.accuracy_at(10.0) == 0.70 and curve.accuracy_at(40.0) == 0.85
    assert curve.accuracy_at(20.0) == 0.80
    assert curve.cost_to_reach(0.70) == 10.0 and curve.cost_to_reach(0.85) == 40.0
    assert curve.cost_to_reach(0.80) == 20.0
    assert curve.cost_to_reach(0.851) == 40.0


def test_a_flat_stretch_is_reached_at_its_cheapest_cost() -> None:
    curve = BudgetCurve.from_points([(10, 0.7), (20, 0.8), (30, 0.8), (40, 0.9)], (40, 0.9))
    assert curve.cost_to_reach(0.8) == 20
    assert curve.cost_to_reach(0.85) == pytest.approx(35.0)


def test_effective_speedup_at_the_edges_of_the_curve() -> None:
    curve = BudgetCurve.from_points([(p[0], p[1]) for p in CURVE], (40.0, 0.85))
    assert curve.effective_speedup(40.0, 0.85) == 1.0  # the full baseline itself
    # above the best baseline: the full cost is all the points show it needs, a lower bound
    assert curve.effective_speedup(40.0, 0.90) == 1.0
    assert curve.effective_speedup(50.0, 0.90) == pytest.approx(0.8)
    assert curve.effective_speedup(39.0, 0.90) == pytest.approx(40.0 / 39.0)
    assert curve.effective_speedup(0.0, 0.80) is None  # a free trial has no ratio
    # below the cheapest baseline: its segment extended, down to cost 0 and no speedup
    assert curve.effective_speedup(4.0, 0.65) == pytest.approx(5.0 / 4.0)
    assert curve.effective_speedup(5.0, 0.55) is None


def test_a_trial_exactly_on_the_curve_does_not_beat_it() -> None:
    study = make_study(search(20.0, 0.80))
    metrics = derived_metrics(study.trials[3], study.trials)
    assert metrics["effective_speedup"] == 1.0 and metrics["beats_curve"] is False
    # A baseline never beats the curve it is part of, whatever its numbers.
    baseline_metrics = derived_metrics(study.trials[0], study.trials)
    assert baseline_metrics["beats_curve"] is False


def test_no_curve_without_a_completed_full_budget_baseline() -> None:
    half = baseline(20.0, 0.80, 0.5)
    assert BudgetCurve.from_trials([half]) is None
    running = create_trial(
        state=TrialState.RUNNING, user_attrs={"role": "baseline", "budget_fraction": 1.0}
    )
    assert BudgetCurve.from_trials([half, running]) is None
    trial = search(20.0, 0.8)
    assert derived_metrics(trial, [half, trial]) == dict.fromkeys(
        ("speedup", "accuracy_change_pp", "effective_speedup", "beats_curve")
    )
    unfinished = create_trial(state=TrialState.FAIL, user_attrs={"role": "search"})
    assert set(derived_metrics(unfinished, [unfinished]).values()) == {None}


def test_the_curve_of_the_trials_device_is_used_and_any_device_otherwise() -> None:
    def on(device: str, cost: float, accuracy: float, fraction: float):
        attrs = {"role": "baseline", "budget_fraction": fraction, "device": device}
        return create_trial(values=[cost, accuracy], user_attrs=attrs)

    cpu = [on("cpu", 10.0, 0.7, 0.5), on("cpu", 40.0, 0.85, 1.0)]
    gpu = [on("gpu", 1.0, 0.7, 0.5), on("gpu", 4.0, 0.85, 1.0)]
    trial = create_trial(values=[2.0, 0.85], user_attrs={"role": "search", "device": "gpu"})
    trials = [*cpu, *gpu, trial]
    assert derived_metrics(trial, trials)["speedup"] == pytest.approx(2.0)  # 4 s / 2 s
    elsewhere = create_trial(values=[2.0, 0.85], user_attrs={"role": "search", "device": "tpu"})
    assert derived_metrics(elsewhere, [*cpu, elsewhere])["speedup"] == pytest.approx(20.0)


def test_equal_trials_are_both_on_the_front_and_ties_on_one_axis_are_dominated() -> None:
    study = make_study(search(15.0, 0.78), search(15.0, 0.78), search(15.0, 0.75))
    study.add_trial(create_trial(values=[5.0, 0.99], user_attrs={"role": "confirm"}))
    front = [t.number for t in pareto_front(study.trials)]
    assert front == [0, 3, 4, 1, 2] or front == [0, 4, 3, 1, 2]
    assert 5 not in front  # same cost, lower accuracy
    assert 6 not in front  # confirmation runs are not part of the search


def test_pick_rules_refuse_what_they_cannot_do() -> None:
    study = make_study(search(30.0, 0.845))
    empty = optuna.create_study(directions=["minimize", "maximize"], study_name="empty")
    with pytest.raises(PickError, match="'empty' has no completed trial yet"):
        pick(empty, "knee")
    with pytest.raises(PickError, match="trial:N needs a trial number"):
        pick(study, "trial:x")
    with pytest.raises(PickError, match="fastest-within:PP needs a number"):
        pick(study, "fastest-within:half")
    with pytest.raises(PickError, match="unknown rule 'fastest'"):
        pick(study, "fastest")
    assert pick(study, "trial:3").number == 3
    assert pick(study, "fastest-within").number == 3  # 0.5 points by default: -0.5 pp is in


def test_most_accurate_breaks_a_tie_by_the_cheaper_trial() -> None:
    study = make_study(search(30.0, 0.85), search(35.0, 0.85))
    assert pick(study, "most-accurate").number == 3


def test_fastest_within_counts_a_trial_exactly_at_the_margin() -> None:
    study = make_study(search(25.0, 0.84))  # -1 pp, effective speedup 36/25
    assert pick(study, "fastest-within:1").number == 3
    with pytest.raises(PickError, match="within 0.99 points"):
        pick(study, "fastest-within:0.99")


def test_the_knee_of_a_short_front_is_its_most_accurate_point() -> None:
    study = optuna.create_study(directions=["minimize", "maximize"])
    study.add_trials([baseline(10.0, 0.7, 0.5), baseline(40.0, 0.85, 1.0)])
    assert pick(study, "knee").number == 1
    flat = optuna.create_study(directions=["minimize", "maximize"])
    flat.add_trials([search(10.0, 0.8), search(10.0, 0.8), search(10.0, 0.8)])
    assert pick(flat, "knee").number == 0  # a front of equal points: no chord, the first


def test_completed_lists_only_the_completed_trials() -> None:
    study = make_study(create_trial(state=TrialState.FAIL, user_attrs={"role": "search"}))
    assert [t.number for t in completed(study)] == [0, 1, 2]


def test_the_knee_is_measured_in_units_normalised_by_the_fronts_spans() -> None:
    # In seconds and fractions the knee would be another point: each axis is scaled to [0, 1].
    study = optuna.create_study(directions=["minimize", "maximize"])
    study.add_trials([search(8.0, 0.61), search(27.0, 0.62), search(34.0, 0.63),
                      search(43.0, 0.66)])  # fmt: skip
    assert pick(study, "knee").number == 2
    two = optuna.create_study(directions=["minimize", "maximize"])
    two.add_trials([search(40.0, 0.9), search(10.0, 0.7)])
    assert pick(two, "knee").number == 0  # a front of two: its more accurate end


def test_a_baseline_never_beats_the_curve_even_before_it_is_part_of_it() -> None:
    # A baseline is recorded against the baselines finished before it: far above their curve,
    # it is still not a schedule that beats it.
    fast = baseline(2.0, 0.80, 0.5)
    metrics = derived_metrics(fast, make_study().trials)
    assert metrics["effective_speedup"] == pytest.approx(10.0) and metrics["beats_curve"] is False
    schedule = derived_metrics(search(2.0, 0.80), make_study().trials)
    assert schedule["beats_curve"] is True


def test_fastest_within_takes_the_cheapest_trial_that_beats_the_curve() -> None:
    study = make_study(search(25.0, 0.845), search(30.0, 0.84))  # both beat it
    assert pick(study, "fastest-within:2").number == 3


def test_fastest_within_names_the_cheapest_baseline_within_the_margin() -> None:
    study = optuna.create_study(directions=["minimize", "maximize"], study_name="s")
    study.add_trials([baseline(40.0, 0.85, 1.0), baseline(20.0, 0.80, 0.5),
                      baseline(10.0, 0.79, 0.25), baseline(15.0, 0.82, 0.4),
                      search(30.0, 0.70)])  # fmt: skip
    for points, number in [(3, 3), (5, 3), (6, 2)]:  # -3 pp at 15 s exactly on the margin
        with pytest.raises(PickError, match=rf"\(trial {number}\) does as well"):
            pick(study, f"fastest-within:{points}")
    # Within 0.5 points only the full baseline is: it is the one named.
    with pytest.raises(PickError, match=r"\(trial 0\) does as well"):
        pick(study, "fastest-within")


def test_fastest_within_without_a_curve_names_no_baseline() -> None:
    study = optuna.create_study(directions=["minimize", "maximize"], study_name="s")
    study.add_trials([search(30.0, 0.70)])
    with pytest.raises(PickError) as info:
        pick(study, "fastest-within:1")
    assert str(info.value).endswith("within 1 points of the full baseline")
