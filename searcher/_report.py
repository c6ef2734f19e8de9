"""One self-contained HTML page of a study's plots: the front against the baseline budget curve,
the hypervolume history, parameter importances and each hyperparameter's effect."""

from __future__ import annotations

import html
import itertools
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import plotly.graph_objects as go
import plotly.io as pio
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState
from plotly.subplots import make_subplots

from searcher._analysis import curve_for, derived_metrics, pareto_front
from searcher._confirm_view import verdict_figure
from searcher._format import accuracy_text, describe_schedule, show_verdicts, table, trial_rows
from searcher._record import is_baseline, searched
from searcher._spec import SEARCHABLE, StudySpec

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
_CONFIG = {"displaylogo": False, "responsive": True}
_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222;
       max-width: 1200px; margin: 0 auto; padding: 1em 2em 3em; line-height: 1.45; }
h1 { margin-bottom: 0.2em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
dl.facts { display: grid; grid-template-columns: max-content auto; gap: 0.2em 1em; }
dl.facts dt { font-weight: 600; } dl.facts dd { margin: 0; }
p.note { background: #f6f6f6; border-left: 4px solid #999; padding: 0.5em 0.8em; }
pre { background: #f8f8f8; padding: 0.6em; overflow-x: auto; font-size: 0.85em; }
ul.failed li { margin-bottom: 0.3em; } code { font-size: 0.9em; }
"""


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


def _times(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def _hover(t: FrozenTrial, m: dict[str, Any], labels: _Labels) -> str:
    beats = {True: "yes", False: "no", None: "n/a"}[m["beats_curve"]]
    if is_baseline(t):
        beats = "(the curve)"
    return "<br>".join(
        [
            f"<b>trial {t.number}</b>: {html.escape(describe_schedule(t))}",
            f"{labels.metric}: {labels.cost(t.values[0])}",
            f"accuracy: {accuracy_text(t)}",
            f"speedup: {_times(m['speedup'])}",
            f"effective speedup: {_times(m['effective_speedup'])}",
            f"beats the curve: {beats}",
        ]
    )


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


def _pareto_figure(
    done: list[FrozenTrial],
    failed: list[FrozenTrial],
    metrics: dict[int, dict[str, Any]],
    hover: dict[int, str],
    labels: _Labels,
) -> go.Figure:
    fig = go.Figure()
    base = [t for t in done if is_baseline(t)]
    devices = sorted({str(t.user_attrs.get("device")) for t in base})
    for device, dash in zip(devices, itertools.cycle(("solid", "dot", "dash", "dashdot"))):
        points = sorted(
            (t for t in base if str(t.user_attrs.get("device")) == device),
            key=lambda t: t.values[0],
        )
        name = BASELINE_NAME if len(devices) == 1 else f"{BASELINE_NAME} ({device})"
        fig.add_trace(
            _scatter(
                points,
                lambda t: t.values[0],
                lambda t: 100 * t.values[1],
                hover,
                name=name,
                mode="lines+markers",
                line=dict(color=COLORS["baseline"], width=2, dash=dash),
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
    for name, trials, marker in _groups(search, numbers, metrics):
        if trials:
            fig.add_trace(
                _scatter(
                    trials,
                    lambda t: t.values[0],
                    lambda t: 100 * t.values[1],
                    hover,
                    name=name,
                    mode="markers",
                    marker=marker,
                )
            )
    notes = []
    if search and not any(metrics[t.number]["beats_curve"] for t in search):
        notes.append("no trial beats the baseline curve")
    if failed:
        notes.append(
            f'<span style="color:{COLORS["failed"]}">{len(failed)} failed trial(s) have no '
            "values: listed below the figure</span>"
        )
    subtitle = f"<br><sup>{'; '.join(notes)}</sup>" if notes else ""
    fig.update_layout(
        title=dict(
            text=f"{TITLES['pareto']}: {labels.axis} against validation accuracy (%){subtitle}"
        ),
        xaxis_title=labels.axis,
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
    search: list[FrozenTrial],
    front: set[int],
    metrics: dict[int, dict[str, Any]],
    hover: dict[int, str],
    labels: _Labels,
    full_accuracy: float | None,
) -> go.Figure:
    distributions: dict[str, Any] = {}
    for t in search:
        for name, dist in t.distributions.items():
            distributions.setdefault(name, dist)
    params = sorted(distributions, key=_param_order)
    has_speedup = any(metrics[t.number]["speedup"] is not None for t in search)
    if has_speedup:
        first_title = "speedup vs full baseline (x)"

        def first(t: FrozenTrial) -> float | None:
            return metrics[t.number]["speedup"]
    else:
        first_title = labels.axis

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

        for name, trials, marker in _groups(have, front, metrics):
            for col, y in ((1, first), (2, lambda t: 100 * t.values[1])):
                if not trials:
                    continue
                fig.add_trace(
                    _scatter(
                        trials,
                        x,
                        y,
                        hover,
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


def _figure_html(fig: go.Figure, div_id: str, first: bool) -> str:
    fig.update_layout(template="plotly_white")
    return pio.to_html(
        fig,
        full_html=False,
        include_plotlyjs=first,
        div_id=div_id,
        config=_CONFIG,
        default_width="100%",
    )


def _header(
    study: optuna.Study, spec: StudySpec, trials: list[FrozenTrial], labels: _Labels
) -> str:
    states = Counter(t.state.name.lower() for t in trials)
    counts = ", ".join(f"{n} {s}" for s, n in sorted(states.items())) or "none"
    devices = Counter(str(t.user_attrs["device"]) for t in trials if "device" in t.user_attrs)
    device_text = ", ".join(f"{d} ({n} trials)" for d, n in devices.items()) or "none recorded"
    train = spec.train
    facts = [
        ("Trials", f"{len(trials)} ({counts})"),
        ("Device(s)", device_text),
        (
            "Objectives",
            f"minimise {labels.what} (<code>{html.escape(labels.metric)}</code>), "
            "maximise validation accuracy (<code>val_accuracy</code>)",
        ),
        (
            "Training",
            html.escape(
                f"{train.model} on {train.data}, {train.epochs} epochs at full budget, "
                f"batch {train.batch_size}; sampler {spec.sampler.name}"
            ),
        ),
    ]
    rows = "\n".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts)
    return (
        f"<h1>dikd study report: {html.escape(study.study_name)}</h1>\n"
        f'<dl class="facts">\n{rows}\n</dl>\n'
        "<p><b>How to read the speedups.</b> Speedup = the full baseline's cost / the trial's "
        "cost. Effective speedup = the cost the plain model (trained for fewer epochs) needs "
        "for the same accuracy / the trial's cost; above 1 the schedule beats simply training "
        "less.</p>"
    )


def _failed_html(failed: list[FrozenTrial]) -> str:
    items = []
    for t in failed:
        what = (
            describe_schedule(t)
            if t.user_attrs.get("schedule")
            else (", ".join(f"{k}={v}" for k, v in t.params.items()) or "no parameters")
        )
        reason = t.user_attrs.get("fail_reason", "no reason recorded")
        items.append(
            f"<li>trial {t.number}: {html.escape(what)}<br><code>{html.escape(reason)}</code></li>"
        )
    return (
        f'<h2>Failed trials ({len(failed)})</h2>\n<ul class="failed">\n'
        + "\n".join(items)
        + "\n</ul>"
    )


def build_report(study: optuna.Study, spec: StudySpec) -> str:
    """The report page as an HTML string."""
    trials = searched(study.get_trials(deepcopy=False))
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.values is not None]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    labels = _Labels(spec, study)
    parts = [_header(study, spec, trials, labels)]
    if not done:
        parts.append(
            '<p class="note">This study has no completed trials yet: nothing to plot. Run it '
            "(<code>dikd study run SPEC</code>) and write the report again.</p>"
        )
        if failed:
            parts.append(_failed_html(failed))
        return _page(study.study_name, parts)

    metrics = {t.number: derived_metrics(t, trials) for t in done}
    hover = {t.number: _hover(t, metrics[t.number], labels) for t in done}
    front = pareto_front(done)
    front_numbers = {t.number for t in front}
    search = [t for t in done if not is_baseline(t)]
    figures: list[tuple[str, go.Figure | str]] = []

    figures.append(("pareto-front", _pareto_figure(done, failed, metrics, hover, labels)))
    figures.append(("verdict", verdict_figure(study, spec)))
    figures.append(("hypervolume", _hypervolume_figure(done, labels)))
    try:
        figures.append(("importances", _importance_figure(_importances(study, search), labels)))
    except (ValueError, RuntimeError) as e:
        figures.append(("importances", _note(TITLES["importance"], f"Not computed: {e}.")))
    if search:
        curve = curve_for(None, trials)
        full_accuracy = curve.full_accuracy if curve is not None else None
        fig = _params_figure(search, front_numbers, metrics, hover, labels, full_accuracy)
        figures.append(("hyperparameters", fig))
    else:
        note = "No completed search trial yet: only the baselines have run."
        figures.append(("hyperparameters", _note(TITLES["params"], note)))

    first = True
    for div_id, fig in figures:
        if isinstance(fig, str):
            parts.append(fig)
            continue
        parts.append(f'<section id="{div_id}-section">{_figure_html(fig, div_id, first)}</section>')
        first = False
        if div_id == "verdict":
            parts.append(_verdict_html(study))
        if div_id == "pareto-front":
            parts.append(_front_table(front, trials, labels))
            if failed:
                parts.append(_failed_html(failed))
    return _page(study.study_name, parts)


def _verdict_html(study: optuna.Study) -> str:
    text = show_verdicts(study)
    if text is None:
        return _note(
            "Not confirmed yet",
            "The front above is one seed scored on the validation split the search selected "
            f"on: a margin there may be noise. Run `dikd confirm {study.study_name}` for a "
            "verdict over fresh seeds on the test split.",
        )
    return f"<pre>{html.escape(text)}</pre>"


def _front_table(front: list[FrozenTrial], trials: list[FrozenTrial], labels: _Labels) -> str:
    text = table(*trial_rows(front, trials, labels.metric))
    return (
        f"<details open><summary>The {len(front)} trials of the Pareto front</summary>"
        f"<pre>{html.escape(text)}</pre></details>"
    )


def _note(title: str, text: str) -> str:
    return f'<h2>{html.escape(title)}</h2>\n<p class="note">{html.escape(text)}</p>'


def _page(name: str, parts: list[str]) -> str:
    body = "\n".join(parts)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>dikd report: {html.escape(name)}</title>\n<style>{_CSS}</style>\n</head>\n"
        f"<body>\n{body}\n</body>\n</html>\n"
    )


def write_report(study: optuna.Study, spec: StudySpec, path: str | Path) -> Path:
    """Write the study's report to `path` (one HTML file that opens without a network)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(build_report(study, spec), encoding="utf-8")
    return path
