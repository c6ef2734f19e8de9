"""One self-contained HTML page of a study: its facts, figures (searcher/views/figures.py), verdict,
front table and failed trials."""

from __future__ import annotations

import html
from collections import Counter
from pathlib import Path

import optuna
import plotly.graph_objects as go
import plotly.io as pio
from optuna.trial import FrozenTrial, TrialState

from searcher.study.record import device_of, fail_reason, is_baseline, schedule_of, searched
from searcher.study.spec import StudySpec
from searcher.verdict.confirmation import stored_verdict
from searcher.verdict.front import curve_for, pareto_front
from searcher.verdict.payback import payback
from searcher.views.dashboard import verdict_figure
from searcher.views.figures import (
    TITLES,
    Shown,
    _hypervolume_figure,
    _importance_figure,
    _importances,
    _Labels,
    _params_figure,
    _pareto_figure,
)
from searcher.views.pruning import learning_curves_figure
from searcher.views.terminal import (
    VERDICT_INTRO,
    describe_schedule,
    table,
    trial_rows,
    verdict_rows,
)

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
table.verdicts { border-collapse: collapse; width: 100%; font-size: 0.85em; }
table.verdicts th, table.verdicts td { border-bottom: 1px solid #ddd; padding: 0.3em 0.5em;
       text-align: left; vertical-align: top; }
table.verdicts td { overflow-wrap: anywhere; }
p.procedure { font-size: 0.85em; color: #555; }
"""


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
    devices = Counter(str(device_of(t)) for t in trials if device_of(t) is not None)
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
            if schedule_of(t)
            else (", ".join(f"{k}={v}" for k, v in t.params.items()) or "no parameters")
        )
        reason = fail_reason(t) or "no reason recorded"
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

    shown = Shown.of(done, trials, labels)
    front = pareto_front(done)
    front_numbers = {t.number for t in front}
    search = [t for t in done if not is_baseline(t)]
    figures: list[tuple[str, go.Figure | str]] = []

    figures.append(("pareto-front", _pareto_figure(done, failed, shown)))
    figures.append(("verdict", verdict_figure(study, spec)))
    figures.append(("hypervolume", _hypervolume_figure(done, labels)))
    curves = learning_curves_figure(trials, labels.axis)
    if curves is not None:
        figures.append(("learning-curves", curves))
    try:
        figures.append(("importances", _importance_figure(_importances(study, search), labels)))
    except (ValueError, RuntimeError) as e:
        figures.append(("importances", _note(TITLES["importance"], f"Not computed: {e}.")))
    if any(t.distributions for t in search):
        curve = curve_for(None, trials)
        full_accuracy = curve.full_accuracy if curve is not None else None
        fig = _params_figure(search, front_numbers, shown, full_accuracy)
        figures.append(("hyperparameters", fig))
    else:
        note = (
            "The space searches no hyperparameter: every one is fixed in the spec."
            if search
            else "No completed search trial yet: only the baselines have run."
        )
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
    stored = stored_verdict(study)
    verdicts, procedure = stored.candidates, stored.procedure
    cost = f'<p class="payback">{html.escape(payback(study).text())}.</p>'
    if not verdicts:
        return (
            _note(
                "Not confirmed yet",
                "The front above is one seed scored on the validation split the search selected "
                f"on: a margin there may be noise. Run `dikd confirm {study.study_name}` for a "
                "verdict over fresh seeds on the test split.",
            )
            + cost
        )
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    headers, rows = verdict_rows(verdicts, trials)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in row) + "</tr>"
        for row in rows
    )
    return (
        f"<p>{html.escape(VERDICT_INTRO[0].upper() + VERDICT_INTRO[1:])}.</p>\n"
        f'<table class="verdicts"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>\n'
        f'<p class="procedure">Procedure: {html.escape(procedure)}.</p>\n' + cost
    )


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
