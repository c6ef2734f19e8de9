"""The HTML report: self-contained, its four figures, and the cases with nothing to plot.

Training is replaced by a deterministic stand-in so the study has a known front (one schedule
beats the budget curve, others do not) and the test runs in seconds; the real `dikd report` on a
trained study is covered in test_study_cli.py.
"""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from tiny import stand_in_result, tiny_spec

from objectives import TrainConfig, TrainResult
from searcher.study import search
from searcher.study.spec import StudySpec, parse_spec
from searcher.verdict.confirmation import store_verdict
from searcher.verdict.plan import Candidate
from searcher.verdict.statistics import SeedResult, Settings, summarise
from searcher.views.dashboard import verdict_figure
from searcher.views.figures import hypervolume_2d
from searcher.views.pruning import learning_curves_figure
from searcher.views.report import build_report, write_report

SPEC = tiny_spec("report", sampler={"name": "random", "seed": 3}, n_trials=10)
TITLES = [
    "Pareto front",
    "Hypervolume after each completed trial",
    "Parameter importances per objective",
    "Each hyperparameter against speedup and accuracy",
]
BASELINE_LEGEND = "baseline: plain model, fewer epochs"
FAIL_FREQUENCY = 0.79


def fake_train(config: TrainConfig, on_epoch=None) -> TrainResult:
    """Cost falls and accuracy drops with the reduced fraction; the baselines make a curve from
    (1, 70%) to (2, 80%), so light schedules beat it and heavy ones do not."""
    s = config.schedule
    f = 0.0 if s.policy == "none" else s.frequency
    if f == FAIL_FREQUENCY:  # only the enqueued trial: sampled ones never hit it exactly
        raise RuntimeError("stand-in failure for a high frequency")
    if s.policy == "none":
        cost, accuracy = float(config.epochs), 0.6 + 0.1 * config.epochs
    else:
        cost = config.epochs * (1 - 0.6 * f)
        accuracy = 0.8 - 0.25 * f**2 - (0.04 if s.scale == 4.0 else 0.0)
    return stand_in_result(config, cost, accuracy, f)


def make_study(folder: Path, name: str, *, run: int | None, **changes) -> tuple:
    spec = parse_spec({**SPEC, "name": name, **changes})
    study = search.create_or_resume(spec, f"sqlite:///{folder / 'report.db'}")
    if run is not None:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(search, "train", fake_train)
            search.run_trials(study, spec, max_trials=run)
    return study, spec


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("report")


@pytest.fixture(scope="module")
def report(folder) -> tuple[optuna.Study, StudySpec, str]:
    study, spec = make_study(folder, "report", run=None)
    # Forced after the baselines, before the sampled trials: it fails in the stand-in.
    study.enqueue_trial({"policy": "stochastic", "frequency": FAIL_FREQUENCY, "scale": 4.0})
    study.enqueue_trial({"policy": "deterministic", "frequency": 0.25, "scale": 2.0})
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(search, "train", fake_train)
        search.run_trials(study, spec)
    path = write_report(study, spec, folder / "out" / "report.html")
    return study, spec, path.read_text(encoding="utf-8")


def test_report_is_self_contained_with_its_figures(report):
    study, _, page = report
    states = [t.state for t in study.get_trials()]
    assert states.count(TrialState.COMPLETE) == 10 and states.count(TrialState.FAIL) == 1
    assert page.count("plotly.js v") == 1  # the library's banner: embedded once
    assert page.count("Plotly.newPlot(") == 5  # with the verdict's figure
    assert "Not confirmed yet" in page  # and, without a confirmation, why there is no verdict
    assert '<script src="http' not in page and "cdn.plot.ly/plotly" not in page
    for text in TITLES + [BASELINE_LEGEND, "train_time_s", "val_accuracy", "cpu (stand-in)"]:
        assert text in page, text
    assert "training time (s)" in page and "effective speedup" in page
    assert "10 complete" in page and "1 fail" in page


def test_front_trials_that_beat_the_curve_are_marked(report):
    _, _, page = report
    assert "Pareto front, above the baseline curve (one seed: confirm it)" in page
    assert "no trial beats the baseline curve" not in page


def test_failed_trial_is_listed(report):
    _, _, page = report
    assert "Failed trials (1)" in page
    assert "RuntimeError: stand-in failure for a high frequency" in page
    assert "failed trial(s) have no values" in page


def test_flops_objective_labels_the_cost_axis(report):
    study, spec, _ = report
    page = build_report(study, spec.model_copy(update={"objective": "flops"}))
    assert "training cost (FLOPs)" in page


def test_empty_study_says_there_is_nothing_to_plot(folder):
    study, spec = make_study(folder, "empty", run=None)
    page = write_report(study, spec, folder / "empty.html").read_text()
    assert "no completed trials" in page
    assert "2 waiting" in page and "Plotly.newPlot(" not in page


def test_only_failed_trials_are_listed_without_figures(folder):
    study, spec = make_study(folder, "failed", run=None)
    trial = study.ask()
    trial.set_user_attr("fail_reason", "OSError: disk full")
    study.tell(trial, state=TrialState.FAIL)
    page = build_report(study, spec)
    assert "no completed trials" in page and "Failed trials (1)" in page
    assert "OSError: disk full" in page


def test_too_few_search_trials_gives_a_note_not_importances(folder):
    study, spec = make_study(folder, "few", run=3)
    page = build_report(study, spec)
    assert "Not computed: 1 completed search trial(s)" in page
    assert page.count("Plotly.newPlot(") == 4


def test_hypervolume_2d():
    # Both minimised, reference (4, 0): (1, -1) covers [1, 4] x [-1, 0], area 3; (2, -2) adds
    # [2, 4] x [-2, -1], area 2.
    assert hypervolume_2d([(1.0, -1.0), (2.0, -2.0)], (4.0, 0.0)) == pytest.approx(5.0)
    # A dominated point and points outside the reference add nothing.
    more = [(1.0, -1.0), (2.0, -2.0), (3.0, -1.5), (5.0, -9.0), (0.5, 1.0)]
    assert hypervolume_2d(more, (4.0, 0.0)) == pytest.approx(5.0)
    assert hypervolume_2d([], (4.0, 0.0)) == 0.0


def test_hypervolume_matches_optuna_where_available():
    hv = pytest.importorskip("optuna._hypervolume")
    np = pytest.importorskip("numpy")
    points = [(1.0, -0.7), (1.4, -0.74), (2.0, -0.8), (1.8, -0.72)]
    expected = hv.compute_hypervolume(np.array(points), np.array([2.2, 0.0]))
    assert hypervolume_2d(points, (2.2, 0.0)) == pytest.approx(expected)


def test_report_hover_names_the_schedule(report):
    _, _, page = report
    # Plotly escapes the hover's tags inside its JSON, so look for the plain parts.
    assert "deterministic f=0.25 x2 pooled bn=freeze, 2 ep" in page
    assert "effective speedup: 1.04x" in page


def _with_partial(number: int, scores: list[float | None]) -> optuna.trial.FrozenTrial:
    points = [{"epoch": e + 1, "cost": e + 1.0, "val_accuracy": a} for e, a in enumerate(scores)]
    trial = optuna.trial.create_trial(
        values=[float(len(scores)), scores[-1]],
        user_attrs={"role": "search", "partial": {"planned_epochs": 3, "points": points}},
    )
    trial.number = number
    return trial


def test_learning_curves_are_left_out_without_per_epoch_scores() -> None:
    # eval_every_epoch: false scores each trial once, after its last epoch: one dot per trial
    last_only = [_with_partial(n, [None, None, 0.7 + n / 100]) for n in range(3)]
    assert learning_curves_figure(last_only, "time (s)") is None
    per_epoch = [*last_only, _with_partial(3, [0.5, 0.6, 0.72])]
    figure = learning_curves_figure(per_epoch, "time (s)")
    assert figure is not None and len(figure.data) == 4


def test_the_confirmation_table_is_an_html_table_that_wraps(folder) -> None:
    study, spec = make_study(folder, "confirmed", run=8)
    candidate = next(t for t in study.trials if t.user_attrs.get("role") == "search" and t.values)
    plain = ((0.5, 0.74), (0.75, 0.78), (1.0, 0.80))
    results = [SeedResult(s, 0.7, 0.80 + 0.003 * (s % 3), plain, plain[-1]) for s in range(3)]
    settings = Settings()
    store_verdict(study, [Candidate(candidate, (0.5, 0.75, 1.0))],
                  {candidate.number: summarise(results, settings)}, settings, 1000)  # fmt: skip
    page = build_report(study, spec)
    table = page[page.index('<table class="verdicts">') :]
    table = table[: table.index("</table>")]
    assert "<th>effective [95%]</th>" in table and "win at 3 seeds" in table
    assert "<pre>confirmation" not in page  # no fixed-width block to run off the page
    assert "table.verdicts td { overflow-wrap: anywhere; }" in page


def test_the_plain_model_is_drawn_as_the_curve_speedups_are_read_from(folder) -> None:
    """A dearer budget that scored below a cheaper one (noise) does not dip the drawn line: the
    line is the budget curve's best accuracy within a cost, the markers what each run measured."""
    measured = {1: 0.72, 2: 0.70, 4: 0.80}

    def dipping(config: TrainConfig, on_epoch=None) -> TrainResult:
        return stand_in_result(config, float(config.epochs), measured[config.epochs])

    spec = parse_spec(
        {**SPEC, "name": "dip", "train": {**SPEC["train"], "epochs": 4},
         "baseline": {"fractions": [0.25, 0.5, 1.0]}}
    )  # fmt: skip
    study = search.create_or_resume(spec, f"sqlite:///{folder / 'dip.db'}")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(search, "train", dipping)
        search.run_trials(study, spec, max_trials=3)  # the three baselines
    line, markers = verdict_figure(study, spec).data[:2]
    assert list(line.x) == [1.0, 2.0, 4.0] and list(line.y) == pytest.approx([72, 72, 80])
    assert [(x, round(y, 6)) for x, y in sorted(zip(markers.x, markers.y))] == [
        (1, 72),
        (2, 70),
        (4, 80),
    ]
