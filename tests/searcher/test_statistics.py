"""The confirmation's statistics on synthetic paired numbers."""

from __future__ import annotations

import math
import random

import pytest

from searcher.verdict.curve import BudgetCurve
from searcher.verdict.statistics import (
    LOSS,
    UNDECIDED,
    WIN,
    SeedResult,
    Settings,
    is_final,
    look,
    sequential_verdict,
    summarise,
)

# 3 to 8 seeds, alpha 0.05, min_saving 5%; the looks alone (futility has tests of its own)
SETTINGS = Settings(futility=False)
FUTILITY = Settings(futility=True)


def _simulate(
    true_mean: float, sd: float, runs: int, seed: int, settings: Settings = SETTINGS
) -> dict[str, int]:
    rng = random.Random(seed)
    counts = {WIN: 0, LOSS: 0, UNDECIDED: 0}
    for _ in range(runs):
        draws = [rng.gauss(true_mean, sd) for _ in range(settings.max_seeds)]
        counts[sequential_verdict(draws, settings).verdict] += 1
    return counts


def test_null_false_win_rate_over_all_looks_is_at_most_alpha() -> None:
    # No true margin, through every look from 3 to 8 seeds, stopping at the first decision.
    counts = _simulate(0.0, 1.0, 4000, seed=0)
    assert counts[WIN] / 4000 <= SETTINGS.alpha
    assert counts[LOSS] / 4000 <= SETTINGS.alpha


def test_naive_repeated_looks_would_inflate_the_false_win_rate() -> None:
    # The same looks at the unsplit level: the inflation the Bonferroni split exists for.
    naive = Settings(min_seeds=3, max_seeds=3, alpha=0.05)
    rng = random.Random(1)
    wins = 0
    for _ in range(4000):
        draws = [rng.gauss(0, 1) for _ in range(8)]
        wins += any(look(draws[:n], naive).verdict == WIN for n in range(3, 9))
    assert wins / 4000 > SETTINGS.alpha


def test_a_true_margin_of_two_standard_deviations_is_mostly_a_win() -> None:
    counts = _simulate(2.0, 1.0, 2000, seed=2)
    assert counts[WIN] / 2000 > 0.8
    assert counts[LOSS] == 0


def test_a_clear_loss_is_called_a_loss() -> None:
    assert _simulate(-2.0, 1.0, 500, seed=3)[LOSS] / 500 > 0.8


def test_undecided_says_roughly_how_many_more_seeds() -> None:
    result = look([0.5, 1.5, -0.2], SETTINGS)
    assert result.verdict == UNDECIDED
    assert result.more_seeds is not None and result.more_seeds > 0
    assert look([0.0, 0.0, 0.0], SETTINGS).more_seeds is None  # no effect: never decides


def _identical_to_plain(seed: int, time_noise: float, rng: random.Random) -> SeedResult:
    """A 'schedule' that is the full-budget plain model: same accuracy, its time re-measured."""
    full = (100.0, 0.85 + rng.gauss(0, 0.01))
    plain = ((50.0, full[1] - 0.04), (75.0, full[1] - 0.01), full)
    return SeedResult(seed, full[0] * (1 + rng.gauss(0, time_noise)), full[1], plain, full)


@pytest.mark.parametrize("time_noise", [0.0, 0.01, 0.03])
def test_a_schedule_identical_to_the_plain_model_is_never_a_win(time_noise: float) -> None:
    rng = random.Random(4)
    for trial in range(300):
        results = [_identical_to_plain(s, time_noise, rng) for s in range(8)]
        assert summarise(results, SETTINGS).verdict != WIN, trial


def test_min_saving_is_what_stops_a_lucky_clock() -> None:
    # Every run of the identical schedule timed 2% fast: without a practical threshold the
    # tiny interval around that difference calls it a win.
    rng = random.Random(5)
    results = [_identical_to_plain(s, 0.0, rng) for s in range(8)]
    fast = [SeedResult(r.seed, r.cost * 0.98, r.accuracy, r.plain, r.full) for r in results]
    assert summarise(fast, Settings(min_saving=0.0)).verdict == WIN
    assert summarise(fast, SETTINGS).verdict != WIN


def test_summary_reports_margin_speedup_and_full_budget_comparison() -> None:
    results = [
        SeedResult(s, 60.0, 0.84 + 0.001 * s, ((50, 0.78), (75, 0.83), (100, 0.85)), (100, 0.85))
        for s in range(3)
    ]
    summary = summarise(results, SETTINGS)
    assert summary.verdict == WIN
    assert summary.decision.n == 3
    assert summary.margin_pp.mean == pytest.approx(100 * (0.841 - 0.80))
    assert summary.time_ratio.mean == pytest.approx(0.6)
    assert summary.accuracy_change_pp.mean == pytest.approx(-0.9)
    assert summary.effective_speedup.mean > 1.1
    assert [row["seed"] for row in summary.to_dict()["per_seed"]] == [0, 1, 2]


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="min_seeds"):
        Settings(min_seeds=5, max_seeds=4)
    with pytest.raises(ValueError, match="min_saving"):
        Settings(min_saving=1.0)


def test_futility_only_stops_never_wins_and_keeps_most_of_the_power() -> None:
    # Paired on the same draws: a futile stop ends a run that would otherwise go on, so every
    # win with futility is a win without it (at the same look), and the null rate can only fall.
    rng = random.Random(6)
    for true_mean in (0.0, 1.0, 2.0):
        wins_plain = wins_futile = seeds_plain = seeds_futile = 0
        for _ in range(2000):
            draws = [rng.gauss(true_mean, 1.0) for _ in range(8)]
            plain, futile = sequential_verdict(draws, SETTINGS), sequential_verdict(draws, FUTILITY)
            if futile.verdict == WIN:
                assert plain.verdict == WIN and plain.n == futile.n
            wins_plain += plain.verdict == WIN
            wins_futile += futile.verdict == WIN
            seeds_plain += plain.n
            seeds_futile += futile.n
        if true_mean == 0.0:
            assert wins_futile / 2000 <= SETTINGS.alpha
            assert seeds_futile < 0.8 * seeds_plain  # it saves seeds where there is no win
        if true_mean == 2.0:
            assert wins_futile >= 0.97 * wins_plain


def test_futility_stops_a_hopeless_candidate_at_the_first_look() -> None:
    result = sequential_verdict([-0.5, 0.2, -0.3, 9, 9, 9, 9, 9], FUTILITY)
    assert result.n == 3 and result.verdict == UNDECIDED and result.futile
    assert is_final(result, FUTILITY)
    assert not sequential_verdict([-0.5, 0.2, -0.3], SETTINGS).futile


def test_a_one_point_plain_curve_is_read_so_that_it_can_only_hide_a_win() -> None:
    curve = BudgetCurve.from_points([(80.0, 0.80)], (100.0, None))  # a read-point run
    assert curve.accuracy_at(50.0) == 0.80  # below the point: at least its accuracy
    assert curve.accuracy_at(100.0) == pytest.approx(1.0)  # beyond: the chord from (0, 0)
    concave = [(x, 0.9 - 0.5 * 2.0 ** (-x / 20)) for x in range(1, 200)]
    at = dict(concave)
    for c in (20, 60, 100):
        one = BudgetCurve.from_points([(c, at[c])], (200.0, None))
        assert all(one.accuracy_at(x) >= a - 1e-12 for x, a in concave)
        # The cost to reach an accuracy is never above what the concave curve needs: at least
        # the point's cost at or above its accuracy, nothing (no speedup) below it.
        for x, a in concave:
            needed = one.cost_to_reach(a)
            assert needed is None or needed <= x + 1e-9
    # A schedule that loses to the one plain run shows no effective speedup above 1 (the quickstart
    # of 2026-12-05 printed 1.20x beside a loss before this rule).
    lost = SeedResult(0, cost=13.8, accuracy=0.760, plain=((16.5, 0.782),), full=(27.0, None))
    assert lost.margin_pp() < 0 and lost.effective_speedup() is None


def _concave(x: float) -> float:
    """A plain model's accuracy against its cost (the full budget costs 1)."""
    return 0.88 - 0.40 * math.exp(-3.2 * x)


def _read_point_trial(
    rng: random.Random, candidate_cost: float, gain: float, noise: float, time_noise: float
) -> SeedResult:
    """One seed of a read-point confirmation: the candidate `gain` above the plain model at
    1 / 0.95 of its cost, the plain model once at 1.05 / 0.95 of the search's cost ratio."""
    target = candidate_cost / 0.95
    accuracy = _concave(target) + gain + rng.gauss(0, noise)
    cost = candidate_cost * (1 + rng.gauss(0, time_noise))
    plain_cost = 1.05 * target * (1 + rng.gauss(0, time_noise))
    plain = (plain_cost, _concave(plain_cost) + rng.gauss(0, noise))
    return SeedResult(0, cost, accuracy, (plain,), (plain_cost / (1.05 * target), None))


@pytest.mark.parametrize("time_noise", [0.0, 0.05])
def test_read_point_confirmation_false_win_rate_at_the_null_boundary(time_noise: float) -> None:
    # At the boundary of the null (the candidate exactly as good as the plain model given
    # 1 / 0.95 of its cost), with seed noise and a clock off by 5% a run.
    rng = random.Random(7)
    wins = 0
    for _ in range(2000):
        results = [_read_point_trial(rng, 0.6, 0.0, 0.01, time_noise) for _ in range(8)]
        wins += summarise(results, FUTILITY).verdict == WIN
    assert wins / 2000 <= FUTILITY.alpha
