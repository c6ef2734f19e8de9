"""The report's figures: the front against the baseline budget curve, the hypervolume history,
parameter importances and each hyperparameter's effect."""

from __future__ import annotations

import dataclasses
import html
import itertools
import warnings
from collections.abc import Callable
from typing import Any

import optuna
import plotly.graph_objects as go
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial
from plotly.subplots import make_subplots

from searcher.study.record import device_of, is_baseline
from searcher.study.spec import SEARCHABLE, StudySpec
from searcher.verdict.curve import plain_line
from searcher.verdict.front import derived_metrics, pareto_front
from searcher.views.terminal import accuracy_text, describe_schedule, times_text

BASELINE_NAME = "baseline: plain model, fewer epochs"
TITLES = {
    "pareto": "Pareto front",
    "hypervolume": "Hypervolume after each completed trial",
    "importance": "Parameter importances per objective",
    "params": "Each hyperparameter against speedup and accuracy",
}
COLORS = {
    "baseline": "#333333",
    "front": "#1f77b4",
    "beats": "#2ca02c",
    "dominated": "#b8c7d9",
    "failed": "#d62728",
}


class _Labels:
    """Axis and hover wording for the study's cost objective."""

    def __init__(self, spec: StudySpec, study: optuna.Study) -> None:
        names = study.metric_names or []
        self.metric = names[0] if names else "cost"
        if spec.objective == "wall":
            self.axis, self.unit, self.what = "training time (s)", " s", "wall-clock training time"
        else:
            self.axis, self.unit, self.what = "training cost (FLOPs)", " FLOPs", "training FLOPs"

    def cost(self, value: float) -> str:
        return f"{value:.4g}{self.unit}"


def _hover(t: FrozenTrial, m: dict[str, Any], labels: _Labels) -> str:
    beats = {True: "yes", False: "no", None: "n/a"}[m["beats_curve"]]
    if is_baseline(t):
        beats = "(the curve)"
    return "<br>".join(
        [
            f"<b>trial {t.number}</b>: {html.escape(describe_schedule(t))}",
            f"{labels.metric}: {labels.cost(t.values[0])}",
            f"accuracy: {accuracy_text(t)}",
            f"speedup: {times_text(m['speedup'])}",
            f"effective speedup: {times_text(m['effective_speedup'])}",
            f"beats the curve: {beats}",
        ]
    )


@dataclasses.dataclass(frozen=True)
class Shown:
    """What the figures show of each completed trial (its derived numbers, its hover text, by
    trial number) and the study's labels."""

    metrics: dict[int, dict[str, Any]]
    hover: dict[int, str]
    labels: _Labels

    @classmethod
    def of(cls, done: list[FrozenTrial], trials: list[FrozenTrial], labels: _Labels) -> Shown:
        metrics = {t.number: derived_metrics(t, trials) for t in done}
        hover = {t.number: _hover(t, metrics[t.number], labels) for t in done}
        return cls(metrics, hover, labels)


def _scatter(
    trials: list[FrozenTrial],
    x: Callable[[FrozenTrial], Any],
    y: Callable[[FrozenTrial], Any],
    hover: dict[int, str],
    **kwargs: Any,
) -> go.Scatter:
    return go.Scatter(
        x=[x(t) for t in trials],
        y=[y(t) for t in trials],
        text=[hover[t.number] for t in trials],
        hovertemplate="%{text}<extra></extra>",
        **kwargs,
    )


def _cost_accuracy_scatter(
    trials: list[FrozenTrial], hover: dict[int, str], **kwargs: Any
) -> go.Scatter:
    """The trials at (cost, accuracy in %)."""
    return _scatter(trials, lambda t: t.values[0], lambda t: 100 * t.values[1], hover, **kwargs)


def _groups(
    search: list[FrozenTrial], front: set[int], metrics: dict[int, dict[str, Any]]
) -> list[tuple[str, list[FrozenTrial], dict[str, Any]]]:
    """Search trials split into what the plots show apart, with the marker of each part."""
    on_front = [t for t in search if t.number in front]
    beats = [t for t in on_front if metrics[t.number]["beats_curve"]]
    rest = [t for t in on_front if not metrics[t.number]["beats_curve"]]
    dominated = [t for t in search if t.number not in front]
    return [
        (
            "dominated trials",
            dominated,
            dict(color=COLORS["dominated"], size=8, line=dict(width=0.5, color="#8090a0")),
        ),
        (
            "Pareto front (does not beat the curve)",
            rest,
            dict(color=COLORS["front"], size=11, symbol="diamond"),
        ),
        (
            "Pareto front, above the baseline curve (one seed: confirm it)",
            beats,
            dict(color=COLORS["beats"], size=15, symbol="star", line=dict(width=1, color="#111")),
        ),
    ]


def _pareto_figure(done: list[FrozenTrial], failed: list[FrozenTrial], shown: Shown) -> go.Figure:
    fig = go.Figure()
    base = [t for t in done if is_baseline(t)]
    devices = sorted({str(device_of(t)) for t in base})
    for device, dash in zip(devices, itertools.cycle(("solid", "dot", "dash", "dashdot"))):
        points = sorted(
            (t for t in base if str(device_of(t)) == device),
            key=lambda t: t.values[0],
        )
        name = BASELINE_NAME if len(devices) == 1 else f"{BASELINE_NAME} ({device})"
        costs, accuracies = plain_line(points)  # the device's budget curve
        fig.add_scatter(
            x=costs,
            y=[100 * a for a in accuracies],
            mode="lines",
            name=name,
            legendgroup=name,
            hoverinfo="skip",
            line=dict(color=COLORS["baseline"], width=2, dash=dash),
        )
        fig.add_trace(
            _cost_accuracy_scatter(
                points,
                shown.hover,
                name=name,
                mode="markers",
                legendgroup=name,
                showlegend=False,
                marker=dict(color=COLORS["baseline"], size=9, symbol="square"),
            )
        )
    front = pareto_front(done)
    fig.add_trace(
        go.Scatter(
            x=[t.values[0] for t in front],
            y=[100 * t.values[1] for t in front],
            name="front: best accuracy within a cost",
            mode="lines",
            line=dict(color=COLORS["front"], width=1.5, dash="dash", shape="hv"),
            hoverinfo="skip",
        )
    )
    numbers = {t.number for t in front}
    search = [t for t in done if not is_baseline(t)]
    for name, trials, marker in _groups(search, numbers, shown.metrics):
        if trials:
            style = dict(name=name, mode="markers", marker=marker)
            fig.add_trace(_cost_accuracy_scatter(trials, shown.hover, **style))
    notes = []
    if search and not any(shown.metrics[t.number]["beats_curve"] for t in search):
        notes.append("no trial beats the baseline curve")
    if failed:
        notes.append(
            f'<span style="color:{COLORS["failed"]}">{len(failed)} failed trial(s) have no '
            "values: listed below the figure</span>"
        )
    subtitle = f"<br><sup>{'; '.join(notes)}</sup>" if notes else ""
    fig.update_layout(
        title=dict(
            text=f"{TITLES['pareto']}: {shown.labels.axis} against validation accuracy (%)"
            + subtitle
        ),
        xaxis_title=shown.labels.axis,
        yaxis_title="validation accuracy (%)",
        height=560,
        legend=dict(orientation="h", yanchor="top", y=-0.14, x=0),
        hovermode="closest",
        margin=dict(t=60, b=120),
    )
    return fig


def hypervolume_2d(points: list[tuple[float, float]], reference: tuple[float, float]) -> float:
    """Area dominated by `points` and bounded by `reference`, both objectives minimised."""
    rx, ry = reference
    inside = sorted((x, y) for x, y in points if x < rx and y < ry)
    area, lowest = 0.0, ry
    for x, y in inside:
        if y < lowest:
            area += (rx - x) * (lowest - y)
            lowest = y
    return area


def _hypervolume_figure(done: list[FrozenTrial], labels: _Labels) -> go.Figure:
    ordered = sorted(done, key=lambda t: t.number)
    reference = (1.1 * max(t.values[0] for t in ordered), 0.0)
    points: list[tuple[float, float]] = []
    history = []
    for t in ordered:
        points.append((t.values[0], -t.values[1]))  # accuracy flipped: both minimised
        history.append(hypervolume_2d(points, reference))
    roles = ["baseline" if is_baseline(t) else "search" for t in ordered]
    fig = go.Figure(
        go.Scatter(
            x=[t.number for t in ordered],
            y=history,
            mode="lines+markers",
            name="hypervolume",
            line=dict(color=COLORS["front"], shape="hv"),
            marker=dict(
                size=8,
                symbol=["square" if r == "baseline" else "circle" for r in roles],
                color=[COLORS["baseline"] if r == "baseline" else COLORS["front"] for r in roles],
            ),
            text=roles,
            hovertemplate="trial %{x} (%{text}): %{y:.4g}<extra></extra>",
        )
    )
    only_base = [(t.values[0], -t.values[1]) for t in ordered if is_baseline(t)]
    if only_base:
        fig.add_hline(
            y=hypervolume_2d(only_base, reference),
            line=dict(color=COLORS["baseline"], dash="dot"),
            annotation_text="the baselines alone",
            annotation_position="bottom right",
        )
    fig.update_layout(
        title=dict(
            text=f"{TITLES['hypervolume']}<br><sup>reference point: "
            f"{labels.cost(reference[0])} (1.1 x the largest cost), 0% accuracy; "
            "squares are baseline trials</sup>"
        ),
        xaxis_title="trial number",
        yaxis_title=f"hypervolume ({labels.unit.strip()} x accuracy)",
        height=400,
        showlegend=False,
        margin=dict(t=80),
    )
    return fig


def _search_study(study: optuna.Study, search: list[FrozenTrial]) -> optuna.Study:
    """The search trials alone: baselines have no params, so Optuna's intersection of the
    search space over all trials would be empty."""
    sub = optuna.create_study(directions=study.directions)
    sub.add_trials(search)
    return sub


def _importances(study: optuna.Study, search: list[FrozenTrial]) -> list[dict[str, float]]:
    """Importance of each param for low cost and for high accuracy (PED-ANOVA ranks params for
    reaching low target values, so accuracy is negated; it needs no scikit-learn)."""
    with_params = [t for t in search if t.params]
    if len(with_params) < 2:
        raise ValueError(f"{len(with_params)} completed search trial(s); at least 2 are needed")
    sub = _search_study(study, with_params)
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for sign, i in ((1.0, 0), (-1.0, 1)):
            out.append(
                optuna.importance.get_param_importances(
                    sub,
                    evaluator=optuna.importance.PedAnovaImportanceEvaluator(),
                    target=lambda t, s=sign, k=i: s * t.values[k],
                )
            )
    return out


def _importance_figure(importances: list[dict[str, float]], labels: _Labels) -> go.Figure:
    params = sorted(set(importances[0]) | set(importances[1]), key=_param_order)
    fig = go.Figure()
    names = [f"{labels.metric} (minimised)", "val_accuracy (maximised)"]
    for name, values, color in zip(names, importances, (COLORS["front"], COLORS["beats"])):
        fig.add_trace(
            go.Bar(
                x=params,
                y=[values.get(p, 0.0) for p in params],
                name=name,
                marker_color=color,
                hovertemplate="%{x}: %{y:.3f}<extra>" + name + "</extra>",
            )
        )
    fig.update_layout(
        title=dict(
            text=f"{TITLES['importance']}<br><sup>PED-ANOVA over the search trials, "
            "normalised to sum to 1 per objective</sup>"
        ),
        barmode="group",
        xaxis_title="hyperparameter",
        yaxis_title="importance (fraction)",
        height=420,
        legend=dict(orientation="h", yanchor="bottom", y=1.0, x=1, xanchor="right"),
        margin=dict(t=90),
    )
    return fig


def _param_order(name: str) -> tuple[int, str]:
    return (SEARCHABLE.index(name) if name in SEARCHABLE else len(SEARCHABLE), name)


def _params_figure(
    search: list[FrozenTrial], front: set[int], shown: Shown, full_accuracy: float | None
) -> go.Figure:
    distributions: dict[str, Any] = {}
    for t in search:
        for name, dist in t.distributions.items():
            distributions.setdefault(name, dist)
    params = sorted(distributions, key=_param_order)
    has_speedup = any(shown.metrics[t.number]["speedup"] is not None for t in search)
    if has_speedup:
        first_title = "speedup vs full baseline (x)"

        def first(t: FrozenTrial) -> float | None:
            return shown.metrics[t.number]["speedup"]
    else:
        first_title = shown.labels.axis

        def first(t: FrozenTrial) -> float | None:
            return t.values[0]

    fig = make_subplots(
        rows=len(params),
        cols=2,
        vertical_spacing=min(0.12, 0.35 / len(params)),
        horizontal_spacing=0.1,
    )
    for row, param in enumerate(params, start=1):
        dist = distributions[param]
        categorical = isinstance(dist, CategoricalDistribution)
        have = [t for t in search if param in t.params]

        def x(t: FrozenTrial, p: str = param, c: bool = categorical) -> Any:
            return str(t.params[p]) if c else t.params[p]

        for name, trials, marker in _groups(have, front, shown.metrics):
            for col, y in ((1, first), (2, lambda t: 100 * t.values[1])):
                if not trials:
                    continue
                fig.add_trace(
                    _scatter(
                        trials,
                        x,
                        y,
                        shown.hover,
                        name=name,
                        mode="markers",
                        marker=marker,
                        legendgroup=name,
                        showlegend=row == 1 and col == 1,
                    ),
                    row=row,
                    col=col,
                )
        for col in (1, 2):
            axis: dict[str, Any] = {"title_text": param, "row": row, "col": col}
            if categorical:
                choices = [str(c) for c in dist.choices]
                # Padding so the outer labels are not clipped by the subplot's edge.
                axis.update(
                    type="category", categoryarray=choices, range=[-0.5, len(choices) - 0.5]
                )
            elif isinstance(dist, (FloatDistribution, IntDistribution)) and dist.log:
                axis.update(type="log")
            fig.update_xaxes(**axis)
        fig.update_yaxes(title_text=first_title, row=row, col=1)
        fig.update_yaxes(title_text="accuracy (%)", row=row, col=2)
        if has_speedup:
            fig.add_hline(y=1.0, line=dict(color="#999", dash="dot"), row=row, col=1)
        if full_accuracy is not None:
            fig.add_hline(
                y=100 * full_accuracy, line=dict(color="#999", dash="dot"), row=row, col=2
            )
    fig.update_layout(
        title=dict(
            text=f"{TITLES['params']}<br><sup>one row per searched hyperparameter; "
            "dotted lines: the full baseline</sup>"
        ),
        height=140 + 280 * len(params),
        legend=dict(orientation="h", yanchor="bottom", y=1.0, x=1, xanchor="right"),
        margin=dict(t=110),
    )
    return fig
