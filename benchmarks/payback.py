"""The quickstart task end to end, the old way and the new way, on the same search seeds:
answer cost, payback and verdict side by side (issue 18, docs/payback.md).

    python benchmarks/payback.py --seeds 0 1 --out benchmarks/results/payback
    python benchmarks/payback.py --seeds 0 --small     # a few minutes: the script works
    python benchmarks/payback.py --seeds 0 --ways old  # one way (several processes may share DIR)
    python benchmarks/payback.py --seeds 0 --fidelity  # the rank check, once both ways are done
    python benchmarks/payback.py --combine --out DIR   # the table and last line of DIR's seeds

`--objective flops` counts cost in FLOPs instead of the quickstart's wall time: deterministic,
so other work on a shared machine moves neither the answer cost nor the verdict.

The old way is reproduced by settings, not old code: the quickstart spec as it was (the search
at full fidelity, the plain model at 1, 2, 3 and 4 epochs, 8 sampled schedules) and the
confirmation as it was (the plain model at the whole-epoch budgets around the read point and the
full budget, no futility stop, at most 4 seeds). The new way is `studies/quickstart.yaml` with
the confirmation's defaults. Each seed also measures how well the search's low fidelity ranks
the old way's schedules (Spearman against their full-fidelity ranks) and how well a plain run's
cost per step predicts the full run's (the new way's unit). Results: one JSON per seed in --out.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch
import yaml
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from objectives import TrainConfig, train  # noqa: E402
from searcher.study.record import (  # noqa: E402
    budget_fraction,
    candidate_of,
    is_baseline,
    schedule_of,
    searched,
    seed_of,
    stored_config,
)
from searcher.study.search import create_or_resume, run_trials  # noqa: E402
from searcher.study.spec import parse_spec  # noqa: E402
from searcher.verdict.confirmation import completed_runs, confirm, stored_verdict  # noqa: E402
from searcher.verdict.curve import BudgetCurve  # noqa: E402
from searcher.verdict.front import baselines, derived_metrics  # noqa: E402
from searcher.verdict.payback import payback  # noqa: E402
from searcher.verdict.plan import plan_confirmation  # noqa: E402
from searcher.verdict.statistics import BUDGETS, Settings  # noqa: E402

NEW_SPEC = yaml.safe_load((ROOT / "studies" / "quickstart.yaml").read_text())
# The quickstart spec before issue 18 (commit 07c9141).
OLD_SPEC = {
    **{k: v for k, v in NEW_SPEC.items() if k not in ("search_fidelity", "enqueue")},
    "baseline": {"fractions": [0.25, 0.5, 0.75, 1.0]},
    "n_trials": 12,
}
MAX_SEEDS = 4  # the quickstart's (searcher/cli.py)
SETTINGS = {
    "old": Settings(max_seeds=MAX_SEEDS, plain_runs=BUDGETS, futility=False),
    "new": Settings(max_seeds=MAX_SEEDS),
}
# --small: the same procedure on a task that trains in seconds (it checks the script, not dikd).
SMALL_TRAIN = {"subset": 1200, "val_size": 1000, "image_size": 16, "epochs": 2}
SMALL_FIDELITY = {"subset": 400}


def spec_for(way: str, seed: int, storage: str, small: bool, objective: str) -> dict:
    spec = dict(OLD_SPEC if way == "old" else NEW_SPEC)
    spec.update(name=f"{way}-seed{seed}", storage=storage, sampler={"name": "tpe", "seed": seed})
    spec["objective"] = objective
    if small:
        spec["train"] = {**spec["train"], **SMALL_TRAIN}
        if "search_fidelity" in spec:
            spec["search_fidelity"] = SMALL_FIDELITY
    return spec


def run_way(way: str, seed: int, out: Path, small: bool, objective: str) -> dict:
    storage = f"sqlite:///{out / f'payback-{way}-seed{seed}.db'}"
    spec = parse_spec(spec_for(way, seed, storage, small, objective))
    start = time.perf_counter()
    study = create_or_resume(spec, storage)
    run_trials(study, spec)
    searched_s = time.perf_counter() - start
    plan = plan_confirmation(study, spec, SETTINGS[way], 1, [])
    candidates = plan.candidates
    confirm(study, spec, plan)
    wall = time.perf_counter() - start
    result = payback(study)
    verdict = stored_verdict(study).candidates[candidates[0].number]
    trials = study.get_trials(deepcopy=False)
    train_s = sum(t.user_attrs.get("train_time_s") or 0.0 for t in trials)
    return {
        "way": way,
        "objective": objective,
        "study": study.study_name,
        "storage": storage,
        "pick": candidates[0].number,
        "pick_schedule": schedule_of(candidates[0].trial),
        "verdict": verdict["verdict"] if not verdict.get("futile") else "undecided (futile)",
        "confirm_seeds": verdict.get("seeds"),
        "statistic_pp": verdict.get("statistic_pp"),
        "effective_speedup": verdict.get("effective_speedup"),
        "payback": result.to_dict(),
        "wall_s": wall,
        "search_wall_s": searched_s,
        "train_s": train_s,
        "runs": sum(t.values is not None for t in trials),
    }


def fidelity_check(old_db: str, new_db: str, seed: int, small: bool, objective: str) -> dict:
    """The old way's schedules (full fidelity, seed 0) re-trained at the new way's search
    fidelity, read against the new way's low-fidelity baselines: Spearman of the ranks."""
    import optuna

    old = optuna.load_study(study_name=f"old-seed{seed}", storage=old_db)
    new = optuna.load_study(study_name=f"new-seed{seed}", storage=new_db)
    curve = BudgetCurve.from_trials(baselines(searched(new.get_trials(deepcopy=False))))
    fidelity = SMALL_FIDELITY if small else NEW_SPEC["search_fidelity"]
    old_trials = searched(old.get_trials(deepcopy=False))
    rows = []
    for t in old_trials:
        if is_baseline(t) or t.values is None:
            continue
        config = TrainConfig.from_dict({**stored_config(t), **fidelity})
        low = train(config)
        cost = low.flops if objective == "flops" else low.train_time_s
        rows.append(
            {
                "trial": t.number,
                "full": {"cost": t.values[0], "accuracy": t.values[1],
                         "effective": derived_metrics(t, old_trials)["effective_speedup"]},
                "low": {"cost": cost, "accuracy": low.val_accuracy,
                        "effective": curve.effective_speedup(cost, low.val_accuracy)},
            }
        )  # fmt: skip

    def rho(key: str) -> float | None:
        pairs = [(r["full"][key], r["low"][key]) for r in rows
                 if r["full"][key] is not None and r["low"][key] is not None]  # fmt: skip
        if len(pairs) < 3:
            return None
        return float(stats.spearmanr(*zip(*pairs)).statistic)

    return {"schedules": rows, "spearman_accuracy": rho("accuracy"),
            "spearman_effective": rho("effective")}  # fmt: skip


def unit_check(db: str, name: str) -> list[float]:
    """Per plain run of the old way's confirmation below the full budget: its full-run cost by
    cost per step over the same seed's measured full run (1.0: per-step cost is constant)."""
    import optuna

    study = optuna.load_study(study_name=name, storage=db)
    runs = [t for t in completed_runs(study.get_trials(deepcopy=False)).values()
            if candidate_of(t) is None]  # fmt: skip
    full = {seed_of(t): t.values[0] for t in runs if budget_fraction(t) == 1.0}
    out = []
    for t in runs:
        f = budget_fraction(t)
        if f is not None and f < 1.0 and seed_of(t) in full:
            out.append(t.values[0] / f / full[seed_of(t)])
    return out


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def _write(path: Path, record: dict) -> None:
    path.write_text(json.dumps(record, indent=1))


def run_seed(seed: int, out: Path, small: bool, ways: list[str], objective: str) -> None:
    for way in ways:
        path = out / f"payback-seed{seed}-{way}.json"
        if path.exists():
            continue  # done in an earlier call
        print(f"seed {seed}: the {way} way ...", flush=True)
        record = run_way(way, seed, out, small, objective)
        record.update(seed=seed, small=small, machine=machine(),
                      date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))  # fmt: skip
        _write(path, record)
        print(f"  {record['payback']['text']}; verdict {record['verdict']}; "
              f"{record['wall_s']:.0f} s", flush=True)  # fmt: skip


def run_fidelity(seed: int, out: Path, small: bool) -> None:
    path = out / f"payback-seed{seed}-fidelity.json"
    ways = {w: out / f"payback-seed{seed}-{w}.json" for w in ("old", "new")}
    if path.exists() or not all(p.exists() for p in ways.values()):
        return
    done = {w: json.loads(p.read_text()) for w, p in ways.items()}
    print(f"seed {seed}: fidelity check ...", flush=True)
    record = fidelity_check(
        done["old"]["storage"], done["new"]["storage"], seed, small, done["new"]["objective"]
    )
    storages = {w: r["storage"] for w, r in done.items()}
    record["unit_check_old"] = unit_check(storages["old"], f"old-seed{seed}")
    _write(path, record)


def _fmt_payback(p: dict) -> str:
    t = p["payback_trainings"]
    return "none" if t is None else f"{t[0]:.0f}"


def _fmt_cost(way: dict) -> str:
    return f"{way['payback']['answer_cost_full_runs']:.1f}"


def _records(out: Path) -> list[dict]:
    """One record per seed with both ways done: {"seed", "old", "new", "fidelity"?, ...}."""
    records = []
    for old in sorted(out.glob("payback-seed*-old.json")):
        seed = json.loads(old.read_text())["seed"]
        new = out / f"payback-seed{seed}-new.json"
        if not new.exists():
            continue
        record = {"seed": seed, "old": json.loads(old.read_text()),
                  "new": json.loads(new.read_text())}  # fmt: skip
        record["machine"] = record["new"]["machine"]
        fidelity = out / f"payback-seed{seed}-fidelity.json"
        if fidelity.exists():
            f = json.loads(fidelity.read_text())
            record["unit_check_old"] = f.pop("unit_check_old", None)
            record["fidelity"] = f
        records.append(record)
    return records


def combine(out: Path) -> None:
    records = _records(out)
    if not records:
        print("no seed with both ways yet")
        return
    print("| seed | way | pick | verdict | seeds | answer cost | payback | wall s | train s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in records:
        for way in ("old", "new"):
            w = r[way]
            p = w["payback"]
            said = p["text"].split("; ", 1)[1]
            print(f"| {r['seed']} | {way} | {w['pick']} | {w['verdict']} | "
                  f"{len(w['confirm_seeds'] or [])} | {p['answer_cost_full_runs']:.2f} | "
                  f"{said} | {w['wall_s']:.0f} | {w['train_s']:.0f} |")  # fmt: skip
        f = r.get("fidelity")
        if f:
            print(f"| {r['seed']} | fidelity | Spearman low vs full fidelity over "
                  f"{len(f['schedules'])} schedules: accuracy {f['spearman_accuracy']}, "
                  f"effective speedup {f['spearman_effective']} | | | | | | |")  # fmt: skip
        if r.get("unit_check_old"):
            ratios = ", ".join(f"{x:.3f}" for x in r["unit_check_old"])
            print(f"| {r['seed']} | unit | cost per step x full steps / measured full: {ratios} "
                  "| | | | | | |")  # fmt: skip
    print(f"machine: {records[0]['machine']}")

    def joined(way: str, key) -> str:
        return ",".join(key(r[way]) for r in records)

    print(
        f"payback: old={joined('old', lambda w: _fmt_payback(w['payback']))} "
        f"new={joined('new', lambda w: _fmt_payback(w['payback']))} "
        f"cost_old={joined('old', _fmt_cost)} cost_new={joined('new', _fmt_cost)} "
        f"verdict_old={joined('old', lambda w: w['verdict'].split()[0])} "
        f"verdict_new={joined('new', lambda w: w['verdict'].split()[0])} seeds={len(records)}"
    )


def status(out: Path) -> None:
    """Every study in --out as it stands (a run still going, or stopped): its runs and payback."""
    import optuna

    for db in sorted(out.glob("payback-*-seed*.db")):
        url = f"sqlite:///{db}"
        for summary in optuna.get_all_study_summaries(url):
            study = optuna.load_study(study_name=summary.study_name, storage=url)
            trials = study.get_trials(deepcopy=False)
            done = [t for t in trials if t.values is not None]
            confirm = [t for t in done if t.user_attrs.get("role") == "confirm"]
            print(f"{summary.study_name}: {len(done)} runs done ({len(confirm)} confirmation), "
                  f"{sum(t.state.name == 'RUNNING' for t in trials)} running; "
                  f"{payback(study).text()}")  # fmt: skip
            for t in confirm:
                print(f"  {t.user_attrs['confirm_run']}: cost {t.values[0]:.4g}, "
                      f"test {100 * t.user_attrs['test_accuracy']:.2f}%")  # fmt: skip
            verdicts = stored_verdict(study).candidates
            for number, v in verdicts.items():
                print(f"  verdict of trial {number}: {v.get('verdict')}, seeds {v.get('seeds')}, "
                      f"d_s {v.get('statistic_pp')}")  # fmt: skip


def main() -> None:
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--ways", nargs="+", default=["new", "old"], choices=["old", "new"])
    parser.add_argument("--small", action="store_true", help="a tiny task: checks the script")
    parser.add_argument("--combine", action="store_true", help="only print --out's results")
    parser.add_argument("--fidelity", action="store_true", help="the rank check of --seeds")
    parser.add_argument("--status", action="store_true", help="--out's studies as they stand")
    parser.add_argument("--objective", choices=["wall", "flops"], default="wall")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "payback")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.status:
        status(args.out)
        return
    for seed in [] if args.combine else args.seeds:
        if args.fidelity:
            run_fidelity(seed, args.out, args.small)
        else:
            run_seed(seed, args.out, args.small, args.ways, args.objective)
    combine(args.out)


if __name__ == "__main__":
    main()
