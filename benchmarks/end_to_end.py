"""Schedules against the plain model's budget curve on the quickstart task, side by side.

Trains, with several seeds each: the plain model at 1/4, 1/2, 3/4 and all of the epochs (the
budget curve), interleaved input-only and pooled schedules, and progressive resizing as other
libraries ship it (Composer's defaults). Prints one table (time, FLOPs, accuracy mean +- std over
seeds, accuracy minus the curve at the same time, time to reach the full baseline's accuracy minus
0.5 points) and writes a plotly figure of accuracy against time next to it.

    python benchmarks/end_to_end.py --seeds 0 1 2 --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import plotly.graph_objects as go
import torch
import torch.nn.functional as F
import yaml

from objectives import Schedule, TrainConfig, train
from searcher import BudgetCurve

QUICKSTART = Path(__file__).resolve().parent.parent / "studies" / "quickstart.yaml"

# name -> Schedule keyword arguments (None: the plain model)
VARIANTS: dict[str, dict] = {
    "input-only f=0.5 x2": dict(policy="deterministic", frequency=0.5, kernel_pool=False),
    "pooled f=0.5 x2": dict(policy="deterministic", frequency=0.5),
    "pooled f=0.75 x2": dict(policy="deterministic", frequency=0.75),
    "pooled f=0.5 x4": dict(policy="deterministic", frequency=0.5, scale=4.0),
    "progressive (Composer)": dict(
        policy="progressive", frequency=0.625, end=0.8, kernel_pool=False
    ),  # fmt: skip
    "input-only first 50%": dict(
        policy="deterministic", frequency=1.0, end=0.5, kernel_pool=False
    ),  # fmt: skip
    "input-only f=0.5 lr x1.5": dict(
        policy="deterministic", frequency=0.5, kernel_pool=False, lr_scale=1.5
    ),  # fmt: skip
    "pooled first 50% lr x1.5": dict(
        policy="deterministic", frequency=1.0, end=0.5, lr_scale=1.5
    ),  # fmt: skip
    # second round: around the first round's best
    "input-only first 70%": dict(
        policy="deterministic", frequency=1.0, end=0.7, kernel_pool=False
    ),  # fmt: skip
    "input-only first 50% x1.5": dict(
        policy="deterministic", frequency=1.0, end=0.5, scale=1.5, kernel_pool=False
    ),  # fmt: skip
    "pooled first 50%": dict(policy="deterministic", frequency=1.0, end=0.5),
    # third round: how the small kernel is derived (benchmark-only derivations, see below)
    "pooled f=0.75 uniform grad": dict(policy="deterministic", frequency=0.75),
    "pooled f=0.75 corner taps": dict(policy="deterministic", frequency=0.75),
    "pooled f=0.75 bn=update": dict(policy="deterministic", frequency=0.75, bn="update"),
}


class _UniformTapGradient(torch.autograd.Function):
    """Average pooling forward; backward gives each original tap the mean of the gradients of
    the pooled taps it feeds instead of their sum (3x3 -> 2x2: corner, edge and centre taps in
    the ratio 1:1:1 instead of 1:2:4), scaled so that the taps' mean share stays the same."""

    @staticmethod
    def forward(ctx, weight, size):
        ctx.shape, ctx.size = weight.shape, size
        return F.adaptive_avg_pool2d(weight, size)

    @staticmethod
    def backward(ctx, grad):
        with torch.enable_grad():
            probe = torch.zeros(ctx.shape, device=grad.device, dtype=grad.dtype, requires_grad=True)
            pooled = F.adaptive_avg_pool2d(probe, ctx.size)
            spread, share = torch.autograd.grad(  # pooling's adjoint, of the gradient and of 1s
                pooled, probe, torch.stack([grad, torch.ones_like(grad)]), is_grads_batched=True
            )[0]
        return spread / share * share.mean(), None


def _uniform_grad_kernel(weight, size):
    kh, kw = weight.shape[-2:]
    if (kh, kw) == tuple(size):
        return weight
    return _UniformTapGradient.apply(weight, tuple(size)) * (kh * kw) / (size[0] * size[1])


def _corner_kernel(weight, size):
    """Bilinear resize with aligned corners: for 3x3 -> 2x2, the four corner taps as they are."""
    if tuple(weight.shape[-2:]) == tuple(size):
        return weight
    return F.interpolate(weight, size=tuple(size), mode="bilinear", align_corners=True)


KERNEL_DERIVATIONS = {"uniform grad": _uniform_grad_kernel, "corner taps": _corner_kernel}


def kernel_derivation(variant: str):
    """The kernel derivation a variant's name asks for; None: `reduced`'s own (`pool_kernel`)."""
    return next((f for key, f in KERNEL_DERIVATIONS.items() if key in variant), None)


def base_config(args) -> TrainConfig:
    spec = yaml.safe_load(QUICKSTART.read_text())
    data = {**spec["train"], **({"epochs": args.epochs} if args.epochs else {})}
    if args.image_size:
        data["image_size"] = args.image_size
    if args.model:
        data["model"] = args.model
    return TrainConfig.from_dict(data)


def run(config: TrainConfig, derive_kernel=None) -> dict:
    result = train(config, derive_kernel=derive_kernel)
    cumulative, times = 0.0, []
    for record in result.history:
        cumulative += record.time_s
        times.append((cumulative, record.val_accuracy))
    return {
        "time": result.train_time_s,
        "flops": result.flops,
        "acc": result.val_accuracy,
        "curve": times,
    }


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def run_all(args, base: TrainConfig) -> dict[str, list[dict]]:
    rows: dict[str, list[dict]] = {}
    for seed in args.seeds:  # seeds outermost: machine drift spreads over every variant
        for fraction in (0.25, 0.5, 0.75, 1.0):
            epochs = max(1, round(base.epochs * fraction))
            config = base.model_copy(update={"epochs": epochs, "seed": seed})
            rows.setdefault(f"baseline {epochs} ep", []).append(run(config))
        for name in args.variants:
            schedule = Schedule(**VARIANTS[name], seed=seed)
            config = base.model_copy(update={"schedule": schedule, "seed": seed})
            rows.setdefault(name, []).append(run(config, kernel_derivation(name)))
        print(f"seed {seed} done", flush=True)
    return rows


def paired_deltas(rows: dict[str, list[dict]], baseline_names: list[str], name: str) -> list:
    """Per seed: the run's accuracy minus that seed's own budget curve at the run's time (pp).
    A seed fixes the data split and the initialisation, so pairing removes their spread."""
    deltas = []
    for i, run_ in enumerate(rows[name]):
        points = [(rows[b][i]["time"], rows[b][i]["acc"]) for b in baseline_names]
        at = BudgetCurve.from_points(points, full=points[-1]).accuracy_at(run_["time"])
        deltas.append(None if at is None else 100 * (run_["acc"] - at))
    return deltas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=None, help="override the quickstart's")
    parser.add_argument("--image-size", type=int, default=None, help="resize the images")
    parser.add_argument("--model", default=None, help="override the quickstart's model")
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--table-from", type=Path, help="an end_to_end.json to print again")
    args = parser.parse_args()
    base = base_config(args)

    if args.table_from:  # re-print the table of a saved run
        saved = json.loads(args.table_from.read_text())
        rows = {name: result["runs"] for name, result in saved.items()}
        args.seeds = list(range(len(next(iter(rows.values())))))
        args.out = args.table_from.parent
    else:
        rows = run_all(args, base)

    baseline_names = [n for n in rows if n.startswith("baseline")]
    means = {
        n: (statistics.mean(r["time"] for r in rows[n]), statistics.mean(r["acc"] for r in rows[n]))
        for n in baseline_names
    }
    curve = BudgetCurve.from_points(list(means.values()), full=means[baseline_names[-1]])
    seed_spread = max(mean_std([r["acc"] for r in rows[n]])[1] for n in baseline_names)

    header = (
        f"{'configuration':<28}{'time s':>8}{'GFLOP':>9}{'accuracy %':>16}{'vs curve pp':>13}"
        f"{'paired pp (per seed)':>28}{'to full-0.5pp s':>17}"
    )
    lines = [
        f"quickstart task: {base.model}, {base.data} subset {base.subset}, "
        f"{base.image_size or 'native'} px, {base.epochs} epochs, "
        f"batch {base.batch_size}, seeds {args.seeds}; curve seed spread (max std) "
        f"{100 * seed_spread:.2f} pp",
        header,
    ]
    results = {}
    for name, runs in rows.items():
        time_m, _ = mean_std([r["time"] for r in runs])
        acc_m, acc_s = mean_std([r["acc"] for r in runs])
        flops_m, _ = mean_std([r["flops"] for r in runs])
        # Each seed against its own full baseline's accuracy minus 0.5 points.
        full_runs = rows[baseline_names[-1]]
        reach = [
            next((t for t, a in r["curve"] if a >= full["acc"] - 0.005), None)
            for r, full in zip(runs, full_runs)
        ]
        reached = [t for t in reach if t is not None]
        reach_s = (
            f"{statistics.mean(reached):.1f} ({len(reached)}/{len(reach)})" if reached else "never"
        )
        vs_curve = curve.accuracy_at(time_m)
        delta = "" if vs_curve is None else f"{100 * (acc_m - vs_curve):+.2f}"
        if name in baseline_names:
            delta, paired = "(curve)", "(curve)"
        else:
            deltas = paired_deltas(rows, baseline_names, name)
            known = [d for d in deltas if d is not None]
            paired = " ".join("n/a" if d is None else f"{d:+.1f}" for d in deltas)
            if known:
                paired = f"{statistics.mean(known):+.2f} ({paired})"
        lines.append(
            f"{name:<28}{time_m:>8.1f}{flops_m / 1e9:>9.0f}{100 * acc_m:>10.2f} +-{100 * acc_s:.2f}"
            f"{delta:>13}{paired:>28}{reach_s:>17}"
        )
        results[name] = {"time_s": time_m, "flops": flops_m, "accuracy": acc_m,
                         "accuracy_std": acc_s, "vs_curve_pp": delta, "paired_pp": paired,
                         "runs": runs}  # fmt: skip
    print("\n".join(lines))

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "end_to_end.json").write_text(json.dumps(results, indent=1))
    figure = go.Figure()
    for name, runs in rows.items():
        figure.add_trace(go.Scatter(
            x=[r["time"] for r in runs], y=[100 * r["acc"] for r in runs], mode="markers",
            name=name, marker_symbol="circle" if name.startswith("baseline") else "diamond",
        ))  # fmt: skip
    figure.add_trace(go.Scatter(x=list(curve.costs), y=[100 * a for a in curve.accuracies],
                                mode="lines", name="budget curve (mean)"))  # fmt: skip
    figure.update_layout(
        title="Accuracy against training time (quickstart task)",
        xaxis_title="training time (s)",
        yaxis_title="validation accuracy (%)",
    )
    figure.write_html(args.out / "end_to_end.html", include_plotlyjs=True)
    print(f"figure -> {args.out / 'end_to_end.html'}")


if __name__ == "__main__":
    main()
