"""The confirmation's error rates, simulated (docs/payback.md): the sequential looks with and
without futility stopping, and the two ways of placing the plain runs on a concave curve.

    python benchmarks/verdict_simulation.py --runs 10000

1. d_s drawn from N(margin, 1) (as tests/searcher/test_statistics.py): win, loss and undecided
   rates and the mean number of seeds, 3 to 8 seeds and the quickstart's 3 to 4.
2. Whole seeds simulated on a concave plain-model curve with the quickstart's scale (full
   budget cost 1, test accuracy 76.8% at 0.75 of it and 79.2% at 1, 0.45 points of noise a
   run, the clock 3% off a run): a candidate at 0.73 of the full cost and true effective
   speedup s (s = 1/0.95 is the null's boundary), confirmed with the old plain runs (0.5,
   0.75 and 1.0 of the epochs, read by interpolation) or the new one (one run at 1.05/0.95 of
   the candidate's cost by the search's ratio, read conservatively); the full-run equivalents
   each needs.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from searcher.verdict.statistics import (  # noqa: E402
    BUDGETS,
    READ_POINT,
    WIN,
    SeedResult,
    Settings,
    sequential_verdict,
    summarise,
)


def curve(x: float) -> float:
    # The quickstart's plain model on the test split: about 77% at 3 epochs, 79% at 4.
    return 0.81 - 0.5 * math.exp(-3.3 * x)


def looks(runs: int, settings: Settings, margin: float, rng: random.Random) -> dict:
    counts = {"win": 0, "loss": 0, "undecided": 0}
    seeds = 0
    for _ in range(runs):
        draws = [rng.gauss(margin, 1.0) for _ in range(settings.max_seeds)]
        result = sequential_verdict(draws, settings)
        counts[result.verdict] += 1
        seeds += result.n
    return {k: v / runs for k, v in counts.items()} | {"seeds": seeds / runs}


def seed_result(
    mode: str, speedup: float, rng: random.Random, noise: float, clock: float, margin: float
):
    cost = 0.73 * (1 + rng.gauss(0, clock))
    accuracy = curve(0.73 * speedup) + rng.gauss(0, noise)

    def plain(x: float) -> tuple[float, float]:
        return x * (1 + rng.gauss(0, clock)), curve(x) + rng.gauss(0, noise)

    if mode == BUDGETS:
        points = tuple(plain(x) for x in (0.5, 0.75, 1.0))
        return SeedResult(0, cost, accuracy, points, points[-1]), 0.73 + 2.25
    share = 0.73 / 0.95 * (1 + margin)
    point = plain(share)
    return SeedResult(0, cost, accuracy, (point,), (point[0] / share, None)), 0.73 + share


def seeds_sim(
    runs: int, settings: Settings, speedup: float, rng: random.Random, margin: float
) -> dict:
    wins = seeds = 0
    cost = 0.0
    for _ in range(runs):
        made = [seed_result(settings.plain_runs, speedup, rng, 0.0045, 0.03, margin)
                for _ in range(settings.max_seeds)]  # fmt: skip
        summary = summarise([r for r, _ in made], settings)
        n = summary.decision.n
        wins += summary.verdict == WIN
        seeds += n
        cost += sum(c for _, c in made[:n])
    return {"win": wins / runs, "seeds": seeds / runs, "full_runs": cost / runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--margins", type=float, nargs="+", default=[0.05, 0.10, 0.15])
    parser.add_argument("--only-seeds", action="store_true", help="part 2 only")
    args = parser.parse_args()
    if not args.only_seeds:
        part_one(args.runs)
    part_two(args)


def part_one(runs: int) -> None:
    print("1. d_s ~ N(margin, 1): rates over all looks")
    print("| seeds | futility | margin (sd) | win | loss | undecided | mean seeds |")
    print("|---|---|---|---|---|---|---|")
    for max_seeds in (8, 4):
        for futility in (False, True):
            settings = Settings(max_seeds=max_seeds, futility=futility)
            for margin in (0.0, 1.0, 2.0):  # the same draws with and without futility
                r = looks(runs, settings, margin, random.Random(int(10 * margin) + max_seeds))
                print(f"| 3-{max_seeds} | {'on' if futility else 'off'} | {margin:g} | "
                      f"{r['win']:.3f} | {r['loss']:.3f} | {r['undecided']:.3f} | "
                      f"{r['seeds']:.2f} |")  # fmt: skip


def part_two(args: argparse.Namespace) -> None:
    print("\n2. whole seeds on a concave curve, 3 to 4 seeds: win rate, seeds, full runs")
    print("| plain runs | margin | futility | true effective speedup | win | mean seeds | "
          "full runs |\n|---|---|---|---|---|---|---|")  # fmt: skip
    ways = [(BUDGETS, 0.0, False)] + [(READ_POINT, m, f) for m in args.margins
                                      for f in (False, True)]  # fmt: skip
    for mode, margin, futility in ways:
        settings = Settings(max_seeds=4, plain_runs=mode, futility=futility)
        for speedup in (1 / 0.95, 1.2, 1.44):
            r = seeds_sim(args.runs // 4, settings, speedup, random.Random(1), margin)
            print(f"| {mode} | {margin:g} | {'on' if futility else 'off'} | {speedup:.3f} | "
                  f"{r['win']:.3f} | {r['seeds']:.2f} | {r['full_runs']:.2f} |")  # fmt: skip


if __name__ == "__main__":
    main()
