"""Export a chosen trial as a config that `dikd train --config` and `Schedule.from_dict` load."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import yaml

from objectives._errors import ConfigError
from searcher._analysis import derived_metrics, pick

MEASURED_ATTRS = ("train_time_s", "val_accuracy", "flops", "reduced_fraction", "device", "versions")


def export_document(study: optuna.Study, rule: str) -> dict[str, Any]:
    trial = pick(study, rule)
    metrics = derived_metrics(trial, study.get_trials(deepcopy=False))
    measured = {k: trial.user_attrs.get(k) for k in MEASURED_ATTRS}
    measured.update({k: v for k, v in metrics.items() if v is not None})
    return {
        "study": study.study_name,
        "trial": trial.number,
        "rule": rule,
        "schedule": trial.user_attrs["schedule"],
        "train": trial.user_attrs["train_config"],
        "measured": measured,
    }


def write_export(document: dict[str, Any], path: str | Path, *, overwrite: bool = False) -> Path:
    path = Path(path)
    if path.exists() and not overwrite:
        raise ConfigError(f"{path} exists; choose another -o path or pass --force to replace it")
    header = (
        f"# dikd export: study '{document['study']}', trial {document['trial']}, "
        f"rule {document['rule']}\n# Re-run it with: dikd train --config {path.name}\n"
    )
    path.write_text(header + yaml.safe_dump(document, sort_keys=False))
    return path
