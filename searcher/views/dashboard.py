"""How the verdict is shown: one figure (the report and optuna-dashboard draw it) and, in the
dashboard, the verdict as the study's note and a note on every completed trial.
"""

from __future__ import annotations

from collections import defaultdict

import optuna
import plotly.graph_objects as go
from optuna.trial import FrozenTrial, TrialState

from searcher.study.confirmation_runs import confirmation_runs, confirmation_study
from searcher.study.optuna_internals import storage_trial_id
from searcher.study.record import (
    CONFIRM_RUN,
    CONFIRM_STUDY_ATTR,
    accuracy_on_test,
    budget_fraction,
    candidate_of,
    epochs_of,
    is_baseline,
    is_confirm,
    searched,
    seed_of,
)
from searcher.study.spec import StudySpec
from searcher.verdict.confirmation import completed_runs, stored_verdict
from searcher.verdict.curve import plain_line
from searcher.verdict.front import baselines, derived_metrics, pareto_front
from searcher.verdict.payback import payback
from searcher.verdict.statistics import mean_interval
from searcher.views.terminal import describe_schedule, times_text, verdict_rows

FIGURE_ID = "dikd-verdict"
VERDICT_COLORS = {"win": "#2ca02c", "loss": "#d62728", "undecided": "#ff7f0e", "pending": "#999"}


def verdict_figure(study: optuna.Study, spec: StudySpec) -> go.Figure:
    """The search's budget curve and front (validation split, the search's seed), the plain
    model of each confirmation seed (test split), and each confirmed candidate's mean with 95%
    intervals of cost and test accuracy."""
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    unit = "training time (s)" if spec.objective == "wall" else "training FLOPs"
    fig = go.Figure()
    plain = sorted(baselines(searched(trials)), key=lambda t: t.values[0])
    costs, accuracies = plain_line(plain)
    fig.add_scatter(
        x=costs,
        y=[100 * a for a in accuracies],
        mode="lines",
        name="search: plain model, fewer epochs (validation)",
        legendgroup="search-plain",
        line=dict(color="#333", width=2),
    )
    fig.add_scatter(
        x=[t.values[0] for t in plain],
        y=[100 * t.values[1] for t in plain],
        mode="markers",
        name="search: plain model, fewer epochs (validation)",
        legendgroup="search-plain",
        showlegend=False,
        marker=dict(symbol="square", size=8, color="#333"),
    )
    front = [t for t in pareto_front(trials) if not is_baseline(t)]
    fig.add_scatter(
        x=[t.values[0] for t in front],
        y=[100 * t.values[1] for t in front],
        mode="markers",
        name="search: front (validation, one seed)",
        marker=dict(color="#1f77b4", size=9, symbol="diamond"),
        text=[f"trial {t.number}: {describe_schedule(t)}" for t in front],
        hovertemplate="%{text}<extra></extra>",
    )
    plain = _plain_runs_by_seed(confirmation_runs(study))
    for index, (seed, points) in enumerate(sorted(plain.items())):
        points.sort()
        fig.add_scatter(
            x=[c for c, _ in points],
            y=[100 * a for _, a in points],
            mode="lines+markers",
            name="confirmation: plain model per seed (test)",
            legendgroup="plain",
            showlegend=index == 0,
            line=dict(color="#aaa", width=1),
            marker=dict(size=5),
            hovertemplate=f"seed {seed}: %{{x:.4g}}, %{{y:.2f}}%<extra></extra>",
        )
    for number, v in sorted(stored_verdict(study).candidates.items()):
        rows = v.get("per_seed") or []
        if not rows:
            continue
        cost = mean_interval([r["cost"] for r in rows])
        accuracy = mean_interval([100 * r["test_accuracy"] for r in rows])
        verdict = v.get("verdict", "pending")
        fig.add_scatter(
            x=[cost.mean],
            y=[accuracy.mean],
            mode="markers",
            name=f"trial {number}: {verdict} ({len(rows)} seeds, test)",
            marker=dict(color=VERDICT_COLORS.get(verdict, "#999"), size=14, symbol="star"),
            error_x=dict(type="data", symmetric=False, array=[cost.high - cost.mean],
                         arrayminus=[cost.mean - cost.low]),
            error_y=dict(type="data", symmetric=False, array=[accuracy.high - accuracy.mean],
                         arrayminus=[accuracy.mean - accuracy.low]),
        )  # fmt: skip
    fig.update_layout(
        title="Does a schedule beat training less? Search (validation) and confirmation (test, "
        "fresh seeds, 95% intervals)",
        xaxis_title=unit,
        yaxis_title="accuracy (%)",
        height=560,
        legend=dict(orientation="h", yanchor="top", y=-0.14, x=0),
        margin=dict(t=60, b=140),
    )
    return fig


def _plain_runs_by_seed(trials: list[FrozenTrial]) -> dict[int, list[tuple[float, float]]]:
    """(cost, test accuracy) of the confirmation's plain-model runs, by seed (first of each)."""
    out: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for t in completed_runs(trials).values():
        if candidate_of(t) is None:
            out[seed_of(t)].append((t.values[0], accuracy_on_test(t)))
    return out


def verdict_markdown(study: optuna.Study) -> str:
    """The study's note in the dashboard: the verdict table, or why there is none yet."""
    stored = stored_verdict(study)
    verdicts = stored.candidates
    if not verdicts:
        return (
            "## dikd: not confirmed yet\n\nThe front below is one seed scored on the validation "
            "split: a margin there may be noise. Run `dikd confirm "
            f"{study.study_name}` for a verdict over fresh seeds on the test split.\n\n"
            f"{payback(study).text()}"
        )
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    headers, rows = verdict_rows(verdicts, trials)
    lines = [
        "## dikd verdict: does a schedule beat training the plain model for less time?",
        "",
        "| " + " | ".join(headers) + " |",
        "|" + "---|" * len(headers),
        *("| " + " | ".join(str(c).replace("|", "/") for c in row) + " |" for row in rows),
        "",
        f"Procedure: {stored.procedure}.",
        "",
        f"**{payback(study).text()}** (full-run equivalents of every training the answer "
        "needed; the payback is the trainings of this model on this data after which the "
        "winner has saved that much).",
        "",
        "Margin: test accuracy above the plain model at the same cost (same seed). Effective: "
        "the cost the plain model needs for the candidate's accuracy / its cost. The figure "
        "'dikd-verdict' on the study's History page draws it.",
    ]
    sibling = study.user_attrs.get(CONFIRM_STUDY_ATTR)
    if sibling is not None:
        lines += [
            "",
            f"The confirmation runs are the trials of study `{sibling}` (listed beside this "
            "one): this study's trials, front and plots are the search alone.",
        ]
    return "\n".join(lines)


def _trial_note(t: FrozenTrial, trials: list[FrozenTrial]) -> str | None:
    """The dashboard's note on a trial: what it is and, for a search trial, what its measured
    numbers mean against the budget curve (computed now, from every baseline)."""
    if is_baseline(t):
        return (
            f"**Baseline**: the plain model (no reduced step) for {epochs_of(t)} "
            f"epochs, {budget_fraction(t)} of the budget: a point of the budget "
            "curve every schedule must beat. Never seen by the sampler."
        )
    if is_confirm(t):
        what = (
            f"search trial {candidate_of(t)}"
            if candidate_of(t) is not None
            else f"the plain model at {budget_fraction(t)} of the epochs"
        )
        accuracy = accuracy_on_test(t)
        scored = f"; test accuracy {100 * accuracy:.2f}%" if accuracy is not None else ""
        return (
            f"**Confirmation run** ({t.user_attrs.get(CONFIRM_RUN)}): {what}, re-trained with "
            f"fresh seed {seed_of(t)}{scored}. Not part of the search: never "
            "seen by the sampler, never on the search's front."
        )
    m = derived_metrics(t, trials)
    beats = {True: "yes", False: "no", None: "n/a"}[m["beats_curve"]]
    return (
        f"**Search trial**: {describe_schedule(t)}. Speedup {times_text(m['speedup'])} over the "
        f"full baseline, effective speedup {times_text(m['effective_speedup'])} against the budget "
        f"curve, above the curve: {beats} (one seed, validation split: `dikd confirm` tells "
        "a win from noise)."
    )


def publish(study: optuna.Study, spec: StudySpec) -> None:
    """Write the figure and the notes to the study, where optuna-dashboard shows them."""
    from optuna_dashboard import get_note, save_note, save_plotly_graph_object

    save_plotly_graph_object(study, verdict_figure(study, spec), graph_object_id=FIGURE_ID)
    save_note(study, verdict_markdown(study))
    trials = study.get_trials(deepcopy=False)
    runs = confirmation_study(study)
    where = [(study, trials)]
    if runs is not None and runs is not study:
        save_note(runs, _runs_markdown(study.study_name))
        where.append((runs, runs.get_trials(deepcopy=False)))
    for holder, held in where:
        for t in held:
            if t.state != TrialState.COMPLETE:
                continue
            note = _trial_note(t, trials)
            if note is None:
                continue
            trial = optuna.Trial(holder, storage_trial_id(t))
            if get_note(trial) != note:
                save_note(trial, note)


def _runs_markdown(search_study: str) -> str:
    return (
        f"## dikd: the confirmation runs of study `{search_study}`\n\nEach trial re-trains "
        "a candidate or the plain model with a fresh seed, scored on the test split. The "
        f"verdict, its figure and the search's front are on study `{search_study}`'s page."
    )
