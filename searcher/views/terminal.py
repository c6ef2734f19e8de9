"""Plain-text tables of a study for the terminal."""

from __future__ import annotations

from collections import Counter
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from searcher.study.record import (
    SPEC_ATTR,
    accuracy_standard_error,
    budget_fraction,
    epochs_of,
    fail_reason,
    is_baseline,
    schedule_of,
    searched,
)
from searcher.verdict.confirmation import stored_verdict
from searcher.verdict.front import baselines, derived_metrics, pareto_front
from searcher.verdict.payback import payback


def table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [headers] + [["" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def describe_schedule(trial: FrozenTrial) -> str:
    s = schedule_of(trial)
    epochs = epochs_of(trial)
    if s is None and is_baseline(trial):  # running, or killed
        return f"baseline, {budget_fraction(trial) or '?'} of the epochs"
    if s is None:  # running, killed, or failed before its schedule was made
        return ", ".join(f"{k}={v}" for k, v in trial.params.items()) or "?"
    if s["policy"] == "none":
        return f"baseline, {epochs} epochs"
    window = (
        "" if (s["start"], s["end"]) == (0.0, 1.0) else f" in [{s['start']:.2f},{s['end']:.2f})"
    )
    kind = "pooled" if s["kernel_pool"] else "input-only"
    if s.get("lr_scale", 1.0) != 1.0:
        kind += f" lr x{s['lr_scale']:g}"
    return (
        f"{s['policy']} f={s['frequency']:.2f} x{s['scale']:g} {kind} bn={s['bn']}{window}, "
        f"{epochs} ep"
    )


def _fmt(value: float | None, pattern: str) -> str | None:
    return None if value is None else pattern.format(value)


def times_text(value: float | None) -> str:
    """A speedup: "1.23x", or "n/a" when there is none."""
    return "n/a" if value is None else f"{value:.2f}x"


def accuracy_text(trial: FrozenTrial) -> str:
    """Validation accuracy with its evaluation's own standard error (binomial)."""
    se = accuracy_standard_error(trial)
    text = f"{100 * trial.values[1]:.2f}%"
    return text if se is None else f"{text} ±{100 * se:.2f}"


def trial_rows(trials: list[FrozenTrial], everything: list[FrozenTrial], cost_name: str):
    rows = []
    for t in trials:
        m = derived_metrics(t, everything)
        beats = {True: "yes", False: "no", None: "?"}[m["beats_curve"]]
        if is_baseline(t):
            beats = "(curve)"
        rows.append(
            [
                t.number,
                describe_schedule(t),
                f"{t.values[0]:.4g}",
                _fmt(m["speedup"], "{:.2f}x"),
                accuracy_text(t),
                _fmt(m["accuracy_change_pp"], "{:+.2f}"),
                _fmt(m["effective_speedup"], "{:.2f}x"),
                beats,
            ]
        )
    headers = [
        "trial",
        "schedule",
        cost_name,
        "speedup",
        "accuracy ±se",
        "change pp",
        "effective",
        "above curve (1 seed)",
    ]
    return headers, rows


def show_study(study: optuna.Study, cost_name: str) -> str:
    trials = searched(study.get_trials(deepcopy=False))
    states = Counter(t.state.name for t in trials)
    done = [t for t in trials if t.state.name == "COMPLETE"]
    parts = [
        f"study '{study.study_name}': {len(trials)} trials ("
        + ", ".join(f"{n} {s.lower()}" for s, n in sorted(states.items()))
        + ")"
    ]
    pruner = study.user_attrs.get(SPEC_ATTR, {}).get("pruner", {}).get("name", "none")
    if pruner != "none":
        parts.append(
            f"early stopping: {pruner} pruner; validation scored after every epoch, which it "
            "needs (whatever train.eval_every_epoch says)"
        )
    curve = sorted(baselines(done), key=lambda t: t.values[0])
    if curve:
        parts += ["", "baseline budget curve (the plain model trained for fewer epochs):"]
        parts.append(table(*trial_rows(curve, trials, cost_name)))
    front = pareto_front(done)
    if front:
        parts += [
            "",
            f"Pareto front ({len(front)} trials, one seed each, validation split; 'effective' = "
            "cost the plain model needs for the same accuracy / the trial's cost; above 1x "
            "is above the curve, which only `dikd confirm` can tell from noise):",
        ]
        parts.append(table(*trial_rows(front, trials, cost_name)))
    verdicts = show_verdicts(study)
    if verdicts:
        parts += ["", verdicts]
    if done:
        parts += ["", payback(study).text()]
    failed = [t for t in trials if t.state.name == "FAIL"]
    if failed:
        parts += ["", "failed trials:"]
        parts += [f"  {t.number}: {fail_reason(t) or 'unknown'}" for t in failed]
    from searcher.views.pruning import pruned_lines  # it imports this module

    pruned = pruned_lines(trials)
    if pruned:
        parts += ["", *pruned]
    return "\n".join(parts)


def _interval(i: dict[str, float] | None, pattern: str) -> str:
    if i is None:
        return "n/a"
    return f"{pattern.format(i['mean'])} [{pattern.format(i['low'])}, {pattern.format(i['high'])}]"


def verdict_text(v: dict[str, Any]) -> str:
    """'win', 'loss', or 'undecided after N seeds (...)', with what would decide it."""
    verdict = v.get("verdict", "pending")
    if verdict == "pending":
        return "pending (no seed complete yet)"
    n = v.get("decided_at_seeds") or len(v.get("seeds", []))
    if verdict != "undecided":
        return f"{verdict} at {n} seeds"
    if v.get("futile"):
        return f"undecided after {n} seeds (stopped: a win is out of reach at the most seeds)"
    more = v.get("more_seeds_to_decide")
    hint = f"~{more} more seeds would decide it" if more else "more seeds would not decide it"
    state = "" if v.get("final") else ", still running"
    return f"undecided after {n} seeds ({hint}{state})"


VERDICT_INTRO = (
    "confirmation (fresh seeds, paired, scored on the test split; margin = accuracy above the "
    "plain model at equal cost)"
)


def verdict_rows(verdicts: dict[int, dict[str, Any]], trials: dict[int, FrozenTrial]):
    """The confirmation's table: per candidate, paired over fresh seeds on the test split."""
    headers = [
        "trial",
        "schedule",
        "seeds",
        "margin pp [95%]",
        "effective [95%]",
        "cost vs full",
        "acc vs full pp",
        "verdict",
    ]
    rows = []
    for number, v in sorted(verdicts.items()):
        trial = trials.get(number)
        rows.append(
            [
                number,
                describe_schedule(trial) if trial is not None else "?",
                len(v.get("seeds", [])),
                _interval(v.get("margin_pp"), "{:+.2f}"),
                _interval(v.get("effective_speedup"), "{:.2f}x"),
                _interval(v.get("time_ratio"), "{:.2f}"),
                _interval(v.get("accuracy_change_pp"), "{:+.2f}"),
                verdict_text(v),
            ]
        )
    return headers, rows


def show_verdicts(study: optuna.Study) -> str | None:
    """The stored verdicts as a table with the procedure that reached them; None if none."""
    stored = stored_verdict(study)
    if not stored.candidates:
        return None
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    rows = verdict_rows(stored.candidates, trials)
    return "\n".join([f"{VERDICT_INTRO}:", table(*rows), f"procedure: {stored.procedure}"])
