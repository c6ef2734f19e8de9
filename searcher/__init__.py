"""dikd's search service: Optuna multi-objective studies over downsampling schedules."""

from searcher.study.search import create_or_resume, open_study, run_trials
from searcher.study.secrets import mask_password
from searcher.study.spec import StudySpec, load_spec, parse_spec
from searcher.study.storage import open_storage
from searcher.study.worker import run_worker
from searcher.verdict.curve import BudgetCurve
from searcher.verdict.front import PickError, derived_metrics, pareto_front, pick
from searcher.verdict.payback import Payback, payback
from searcher.views.export import export_document, write_export

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
