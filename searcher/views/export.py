"""Export a chosen trial as a config that `dikd train --config` loads (its `train` is a
TrainConfig, schedule included), with what it measured and what that means. Its
`train.schedule` is what a training loop of your own needs:
`objectives.ScheduledSteps.from_file(path, total_steps)` (or
`objectives.lightning.ScheduleCallback(path)`) applies it step by step."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import yaml

from objectives import ConfigError
from searcher.study.record import (
    DEVICE,
    FLOPS,
    REDUCED_FRACTION,
    TRAIN_TIME_S,
    VAL_ACCURACY,
    VERSIONS,
    stored_config,
)
from searcher.study.search import load_study_spec
from searcher.verdict.confirmation import candidate_config, stored_verdict
from searcher.verdict.front import PickError, derived_metrics, pick
from searcher.verdict.payback import confirmed_winner, payback
from searcher.views.terminal import verdict_text

MEASURED_ATTRS = (TRAIN_TIME_S, VAL_ACCURACY, FLOPS, REDUCED_FRACTION, DEVICE, VERSIONS)
AUTO = "auto"
UNCONFIRMED = (
    "unconfirmed: one seed, scored on the validation split the search selected on; "
    "run `dikd confirm {name}` for a verdict over fresh seeds on the test split"
)


def resolve_rule(study: optuna.Study, rule: str) -> str:
    """`auto`: the confirmed winner when a confirmation has run, else fastest-within:0.5."""
    if rule != AUTO:
        return rule
    verdicts = stored_verdict(study).candidates
    if not verdicts:
        return "fastest-within:0.5"
    best = confirmed_winner(verdicts)
    if best is None:
        said = "; ".join(f"trial {n}: {verdict_text(v)}" for n, v in sorted(verdicts.items()))
        raise PickError(
            f"no confirmed candidate of '{study.study_name}' beats training less ({said}): "
            "train the plain model for fewer epochs, or export anyway with --pick trial:N"
        )
    return f"trial:{best}"


def export_document(study: optuna.Study, rule: str) -> dict[str, Any]:
    """The picked trial's config and measurements, with its confirmation when it has one (then
    the config trains with the first confirmation seed and scores the test split, so that
    `dikd train --config` reproduces that seed's run)."""
    rule = resolve_rule(study, rule)
    trial = pick(study, rule)
    metrics = derived_metrics(trial, study.get_trials(deepcopy=False))
    measured = {k: trial.user_attrs.get(k) for k in MEASURED_ATTRS}
    measured.update({k: v for k, v in metrics.items() if v is not None})
    train = dict(stored_config(trial))
    stored = stored_verdict(study)
    verdict = stored.candidates.get(trial.number)
    if verdict is None:
        confirmation: dict[str, Any] = {"status": UNCONFIRMED.format(name=study.study_name)}
    else:
        confirmation = {
            "status": verdict_text(verdict),
            "procedure": stored.procedure,
            "split": "test",
            **{k: v for k, v in verdict.items() if k not in ("trial",)},
        }
        # The confirmation's full fidelity, whatever fidelity the search trained it at.
        train = candidate_config(load_study_spec(study), trial).to_dict()
        train.update(seed=stored.first_seed, test=True)
    return {
        "study": study.study_name,
        "trial": trial.number,
        "rule": rule,
        "train": train,
        "measured": measured,
        "confirmation": confirmation,
        "payback": payback(study).to_dict(),
    }


def write_export(document: dict[str, Any], path: str | Path, *, overwrite: bool = False) -> Path:
    path = Path(path)
    if path.exists() and not overwrite:
        raise ConfigError(f"{path} exists; choose another -o path or pass --force to replace it")
    header = (
        f"# dikd export: study '{document['study']}', trial {document['trial']}, "
        f"rule {document['rule']}\n# Re-run it with: dikd train --config {path.name}\n"
        f"# In a loop of your own: objectives.ScheduledSteps.from_file('{path.name}', "
        "total_steps=...)\n"
        f"# Confirmation: {document['confirmation']['status']}\n"
        f"# {document['payback']['text']}\n"
    )
    path.write_text(header + yaml.safe_dump(document, sort_keys=False))
    return path
