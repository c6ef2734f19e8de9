"""The samplers see the search trials only: baselines have no parameters, and counted in, they
would empty the intersection search space that multivariate TPE, GP and NSGA-II work in."""

from __future__ import annotations

import pytest
from tiny import tiny_spec

from objectives import TrainConfig, TrainResult
from searcher.study import search
from searcher.study.spec import parse_spec

SPEC = tiny_spec("sampler", n_trials=20)


def stand_in_train(config: TrainConfig, on_epoch=None) -> TrainResult:
    f = 0.0 if config.schedule.policy == "none" else config.schedule.frequency
    cost, accuracy = config.epochs * (1 - 0.5 * f), 0.8 - 0.2 * f * f
    return TrainResult(
        train_time_s=cost, val_accuracy=accuracy, flops=cost, full_step_flops=1.0,
        reduced_step_flops=0.25, reduced_steps=0, total_steps=10, planned_steps=10,
        stopped_early=False, history=[], device="cpu (stand-in)", versions={},
    )  # fmt: skip


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
@pytest.mark.parametrize("sampler", ["tpe", "gp", "nsga2"])
def test_samplers_search_the_schedule_space_jointly_despite_the_baselines(
    tmp_path, monkeypatch, sampler
):
    spec = parse_spec({**SPEC, "sampler": {"name": sampler, "seed": 0}})
    study = search.create_or_resume(spec, f"sqlite:///{tmp_path / 's.db'}")
    monkeypatch.setattr(search, "train", stand_in_train)
    search.run_trials(study, spec, max_trials=8)  # the 2 baselines, then 6 search trials
    trial = study._storage.get_trial(study.ask()._trial_id)

    joint = study.sampler.infer_relative_search_space(study, trial)
    assert {"policy", "frequency", "scale"} <= set(joint)
    unwrapped = search.base_sampler(spec, 0).infer_relative_search_space(study, trial)
    assert not {"policy", "frequency", "scale"} & set(unwrapped)  # what the wrapper prevents


def test_tpe_starts_modelling_after_five_search_trials_not_counting_baselines(
    tmp_path, monkeypatch
):
    spec = parse_spec({**SPEC, "sampler": {"name": "tpe", "seed": 0}})
    study = search.create_or_resume(spec, f"sqlite:///{tmp_path / 's.db'}")
    monkeypatch.setattr(search, "train", stand_in_train)
    search.run_trials(study, spec, max_trials=9)
    # Constant liar shares each relative sample in a system attribute: TPE modelled jointly
    # from the 6th search trial on (trial numbers 7 and 8), never before.
    relative = [
        t.number for t in study.get_trials() if any("relative_params" in k for k in t.system_attrs)
    ]
    assert relative == [7, 8]
