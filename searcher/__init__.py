"""dikd's search service: Optuna multi-objective studies over downsampling schedules."""

from searcher._analysis import PickError, derived_metrics, pareto_front, pick
from searcher._curve import BudgetCurve
from searcher._export import export_document, write_export
from searcher._payback import Payback, payback
from searcher._secrets import mask_password
from searcher._spec import StudySpec, load_spec, parse_spec
from searcher._storage import open_storage
from searcher._study import create_or_resume, open_study, run_trials
from searcher._worker import run_worker

__all__ = [
    "BudgetCurve",
    "Payback",
    "PickError",
    "StudySpec",
    "create_or_resume",
    "derived_metrics",
    "export_document",
    "load_spec",
    "mask_password",
    "open_storage",
    "open_study",
    "parse_spec",
    "pareto_front",
    "payback",
    "pick",
    "run_trials",
    "run_worker",
    "write_export",
]
