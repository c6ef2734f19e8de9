"""Early stopping as the user sees it: the learning curves of the report, with the trials a
pruner stopped marked, and their lines in `dikd study show`."""

from __future__ import annotations

import html

import plotly.graph_objects as go
from optuna.trial import FrozenTrial, TrialState

from searcher.study.pruning import Curve, curve_of
from searcher.study.record import PRUNED_REASON, is_baseline, is_stopped_early
from searcher.views.terminal import describe_schedule

TITLE = "Learning curves: cost and accuracy after each epoch"
COLORS = {"baseline": "#333333", "complete": "#1f77b4", "pruned": "#d62728"}


def stopped_early(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    return [t for t in trials if t.state == TrialState.PRUNED and is_stopped_early(t)]


def pruned_lines(trials: list[FrozenTrial], unit: str = "") -> list[str]:
    """`study show`'s lines for the trials a pruner stopped; none when there are none."""
    pruned = stopped_early(trials)
    if not pruned:
        return []
    lines = [f"stopped early by the pruner ({len(pruned)}; never on the front or exported):"]
    for t in pruned:
        curve = curve_of(t)
        where = ""
        if curve is not None and curve.at(curve.epoch) is not None:
            cost, accuracy = curve.at(curve.epoch)  # type: ignore[misc]
            where = (
                f"; stopped after epoch {curve.epoch} of {curve.planned_epochs}: "
                f"{cost:.4g}{unit}, {100 * accuracy:.2f}%"
            )
        lines.append(f"  {t.number}: {describe_schedule(t)}{where}")
        lines.append(f"      {t.user_attrs[PRUNED_REASON]}")
    return lines


def learning_curves_figure(trials: list[FrozenTrial], axis: str) -> go.Figure | None:
    """One line per trial with partial results (accuracy against cost so far); the trials a
    pruner stopped in red, ending in a cross where they stopped. None when no trial was scored
    before its last planned epoch (`eval_every_epoch: false`): one dot per trial is no curve."""
    curves = [curve_of(t) for t in trials]
    if not any(c is not None and _scored_before_the_end(c) for c in curves):
        return None
    fig = go.Figure()
    shown = {"baseline": False, "complete": False, "pruned": False}
    for t in sorted(trials, key=lambda t: t.number):
        curve = curve_of(t)
        if curve is None or t.state not in (TrialState.COMPLETE, TrialState.PRUNED):
            continue
        kind = "baseline" if is_baseline(t) else "pruned" if is_stopped_early(t) else "complete"
        epochs = [e for e in range(1, curve.epoch + 1) if curve.at(e) is not None]
        points = [curve.at(e) for e in epochs]
        if not points:
            continue
        name = {"baseline": "baseline", "complete": "completed trial", "pruned": "stopped early"}
        hover = html.escape(f"trial {t.number}: {describe_schedule(t)}")
        if kind == "pruned":
            hover += "<br>" + html.escape(t.user_attrs[PRUNED_REASON])
        fig.add_trace(
            go.Scatter(
                x=[p[0] for p in points],  # type: ignore[index]
                y=[100 * p[1] for p in points],  # type: ignore[index]
                mode="lines+markers",
                name=name[kind],
                legendgroup=kind,
                showlegend=not shown[kind],
                line=dict(color=COLORS[kind], width=1.2, dash="dot" if kind == "pruned" else None),
                marker=dict(
                    color=COLORS[kind],
                    size=[5] * (len(points) - 1) + [11 if kind == "pruned" else 5],
                    symbol=["circle"] * (len(points) - 1) + ["x" if kind == "pruned" else "circle"],
                ),
                text=[f"{hover}<br>epoch {e}" for e in epochs],
                hovertemplate="%{text}<extra></extra>",
            )
        )
        shown[kind] = True
    if not fig.data:
        return None
    fig.update_layout(
        title=dict(
            text=f"{TITLE}<br><sup>red crosses: where a pruner stopped a trial "
            "(recorded PRUNED, never on the front)</sup>"
        ),
        xaxis_title=f"{axis}, so far",
        yaxis_title="validation accuracy (%)",
        height=460,
        margin=dict(t=80),
    )
    return fig


def _scored_before_the_end(curve: Curve) -> bool:
    early = range(1, min(curve.epoch + 1, curve.planned_epochs))
    return any(curve.at(e) is not None for e in early)
