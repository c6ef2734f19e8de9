"""A training loop of the user's own as the run (`train.loop`), the step helper, user models."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import torch
from torch import nn
from user_code import loops

from objectives import (
    ConfigError,
    LoopError,
    Schedule,
    ScheduledSteps,
    TrainConfig,
    _imports,
    build_model,
    check_data,
    downsample,
    reduced,
    train,
)
from objectives._step import RECALIBRATION_BATCHES

ALL_REDUCED = Schedule("deterministic", frequency=1.0, scale=2.0)


@pytest.fixture(autouse=True)
def _allow_user_code(monkeypatch):
    """Only `user_code` is allowed, and nothing an earlier test allowed in this process."""
    monkeypatch.setattr(_imports, "_allowed", set())
    monkeypatch.setenv(_imports.ALLOW_ENV, "user_code")


def _config(loop: str = "user_code.loops:good", **changes) -> TrainConfig:
    return TrainConfig.from_dict({"loop": loop, "epochs": 2, "device": "cpu", **changes})


# --- the config ------------------------------------------------------------------------------


def test_a_loop_config_refuses_dikds_own_recipe_and_keeps_only_its_fields() -> None:
    with pytest.raises(ConfigError, match=r"move train.batch_size, train.lr under train.params"):
        _config(lr=0.2, batch_size=32)
    with pytest.raises(ConfigError, match="set train.loop, or drop train.params"):
        TrainConfig.from_dict({"params": {"lr": 0.1}})
    with pytest.raises(ConfigError, match="field 'loop': 'acme' is not an import path"):
        _config(loop="acme")
    config = _config(params={"lr": 0.2})
    stored = config.to_dict()
    assert "lr" not in stored and "model" not in stored and stored["params"] == {"lr": 0.2}
    assert TrainConfig.from_dict(stored) == config  # stored and read back (confirm, export)
    assert _config(lr=0.1).lr == 0.1  # a default written out says nothing the loop ignores


def test_parsing_a_config_imports_nothing() -> None:
    code = (
        "import sys; from objectives import TrainConfig; "
        "TrainConfig(loop='nowhere_pkg.mod:run'); TrainConfig(model='other_pkg.nets:build'); "
        "print(sorted(m for m in sys.modules if m.startswith(('nowhere_pkg', 'other_pkg'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_import_objectives_does_not_import_lightning() -> None:
    code = "import sys, objectives; print('lightning' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --- the run and its result ------------------------------------------------------------------


def test_a_loop_trains_as_the_run_and_its_result_is_what_it_reported() -> None:
    schedule = Schedule("deterministic", frequency=0.5, scale=2.0)
    result = train(_config(schedule=schedule.to_dict(), test=True))
    assert [e.epoch for e in result.history] == [1, 2]
    assert result.val_accuracy == 0.5 and result.test_accuracy == 0.5 and result.test_size == 10
    assert result.total_steps == result.planned_steps == 2 * loops.STEPS
    assert result.reduced_steps == loops.STEPS  # every other step
    # Reduced steps really ran downsampled; evaluation at full resolution.
    train_shapes = [shape for phase, shape in loops.SEEN if phase == "train"]
    assert train_shapes.count((8, 3, 8, 8)) == result.reduced_steps
    assert train_shapes.count((8, 3, 16, 16)) == result.total_steps - result.reduced_steps
    assert all(shape[-1] == 16 for phase, shape in loops.SEEN if phase == "eval")
    # FLOPs: each step at its own cost, counted after training; a reduced step is cheaper.
    assert 0 < result.reduced_step_flops < result.full_step_flops
    assert result.flops == pytest.approx(
        result.full_step_flops * (result.total_steps - result.reduced_steps)
        + result.reduced_step_flops * result.reduced_steps
    )
    assert result.train_time_s == pytest.approx(sum(e.time_s for e in result.history))


def test_the_same_seed_gives_the_same_run() -> None:
    first = [e.epoch for e in train(_config(seed=3)).history]
    shapes_first = list(loops.SEEN)
    assert [e.epoch for e in train(_config(seed=3)).history] == first
    assert loops.SEEN == shapes_first


def test_evaluation_is_left_out_of_the_training_time() -> None:
    result = train(_config("user_code.loops:sleeper", params={"sleep_s": 0.05}))
    assert all(e.time_s >= 2 * 0.05 for e in result.history)  # two sleeping steps an epoch
    # Each epoch's evaluation sleeps 1 s: left out, the timed epochs and the evaluations are
    # disjoint parts of the run's wall time, however slow the machine is.
    started = time.perf_counter()
    slow_eval = train(_config(params={"eval_sleep": 1.0}))
    wall = time.perf_counter() - started
    epochs = len(slow_eval.history)
    assert slow_eval.train_time_s + epochs * 1.0 <= wall


def test_a_stand_in_loop_that_only_sleeps_is_a_valid_cheap_run() -> None:
    result = train(_config("user_code.loops:sleeper", params={"sleep_s": 0.0}, test=True))
    assert result.total_steps == 4 and result.val_accuracy == 0.5 and result.flops == 0.0


def test_pruning_stops_the_epochs_and_marks_the_result() -> None:
    seen = []

    def on_epoch(epoch, so_far):
        seen.append((epoch, so_far.flops > 0))
        return True  # stop after the first epoch

    result = train(_config(epochs=3), on_epoch=on_epoch)
    assert seen == [(1, True)] and result.stopped_early and len(result.history) == 1


@pytest.mark.parametrize("step_inside", [False, True])
def test_bn_statistics_are_re_estimated_before_a_mostly_reduced_score(step_inside) -> None:
    # bn="freeze": reduced steps leave the running statistics alone, so without re-estimation
    # they would stay at their initial values (0 tracked batches). The optimiser may step
    # after the step's block or within it (as Lightning does): re-estimation waits for both.
    config = _config(epochs=3, schedule=ALL_REDUCED.to_dict(), params={"step_inside": step_inside})
    result = train(config)
    assert result.reduced_steps == result.total_steps
    reports = [t for t in loops.BN_TRACE if t[0] == "report"]
    firsts = [t for t in loops.BN_TRACE if t[0] == "first step"]
    # Scored re-estimated each epoch: from the epoch's last inputs, and at the end from the
    # run's last RECALIBRATION_BATCHES inputs.
    kept = min(RECALIBRATION_BATCHES, loops.STEPS)
    assert all(t[1] == kept and t[2] > 0 for t in reports[:-1])
    assert reports[-1][1] == RECALIBRATION_BATCHES and reports[-1][2] > 0
    # Before the final epoch the re-estimation is only for the score: training goes on with
    # the statistics it had.
    assert all(t[1] == 0 and t[2] == 0 for t in firsts)
    # The final one is part of training: counted (and timed).
    assert result.flops > result.reduced_step_flops * result.total_steps


def test_lr_scale_multiplies_the_learning_rate_of_the_optimizer_step_after_a_reduced_step():
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    seen: list[float] = []

    class Recording(torch.optim.SGD):
        def step(self, closure=None):
            seen.append(self.param_groups[0]["lr"])
            return super().step(closure)

    opt = Recording(model.parameters(), lr=0.1)
    lr_schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0 / (step + 1))
    schedule = Schedule("deterministic", frequency=0.5, scale=2.0, lr_scale=3.0)
    steps = ScheduledSteps(schedule, total_steps=4)
    for _ in range(4):
        with steps.step(model, torch.randn(2, 1, 8, 8), opt) as x:
            model(x).sum().backward()
        opt.step()
        lr_schedule.step()
    # Steps 1 and 3 are reduced (deterministic 0.5); the scheduler's lr stays its own.
    assert [schedule.is_reduced(i, 4) for i in range(4)] == [False, True, False, True]
    assert seen == pytest.approx([0.1, 0.1 / 2 * 3, 0.1 / 3, 0.1 / 4 * 3])
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 / 5)


def test_lr_scale_without_the_optimizer_is_refused() -> None:
    schedule = Schedule("deterministic", frequency=1.0, scale=2.0, lr_scale=2.0)
    with pytest.raises(ConfigError, match="lr_scale is 2 but the step was given no optimizer"):
        train(_config(schedule=schedule.to_dict(), params={"give_optimizer": False}))


def test_scheduled_steps_follow_the_schedule_and_restore_the_model() -> None:
    model = build_model("user_code.models:every_conv", num_classes=3, in_channels=1)
    schedule = Schedule("progressive", frequency=0.5, scale=2.0, end=0.5)
    steps = ScheduledSteps(schedule, total_steps=8)
    sizes = []
    for _ in range(8):
        with steps.step(model, torch.randn(2, 1, 16, 16)) as x:
            sizes.append(x.shape[-1])
            model(x).sum().backward()
    # Held at x2 for half the 4-step window, then falling towards 1 (x2, x1.5), then full.
    assert sizes == [8, 8, 8, 11, 16, 16, 16, 16]
    assert not any("forward" in m.__dict__ for m in model.modules())


@pytest.mark.parametrize("end", [1.0, 0.5])
def test_scheduled_steps_re_estimate_bn_at_the_end_of_a_mostly_reduced_run(end) -> None:
    model = build_model("user_code.models:every_conv", num_classes=3, in_channels=1)
    schedule = Schedule("deterministic", frequency=1.0, scale=2.0, end=end)  # bn="freeze"
    steps = ScheduledSteps(schedule, total_steps=12)
    for _ in range(12):
        with steps.step(model, torch.randn(2, 1, 16, 16) + 3.0) as x:
            model(x).sum().backward()
    tracked = int(model.bn.num_batches_tracked)
    if end == 1.0:  # every step reduced: statistics from the last 10 full-size inputs
        assert steps.bn_reestimation_batches == tracked == RECALIBRATION_BATCHES
    else:  # the last half ran full: training's own statistics
        assert steps.bn_reestimation_batches == 0 and tracked == 6


def test_scheduled_steps_read_an_exported_pick(tmp_path) -> None:
    schedule = Schedule("stochastic", frequency=0.3, scale=4.0, kernel_pool=False, seed=5)
    pick = tmp_path / "pick.yaml"
    import yaml

    pick.write_text(yaml.safe_dump({"study": "s", "trial": 3, "measured": {},
                                    "train": {"schedule": schedule.to_dict()}}))  # fmt: skip
    assert ScheduledSteps.from_file(pick, total_steps=10).schedule == schedule
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(_config(schedule=schedule.to_dict()).to_dict()))
    assert ScheduledSteps.from_file(config, total_steps=10).schedule == schedule


# --- the ways a loop goes wrong: one line, the run fails with it ----------------------------


@pytest.mark.parametrize(
    ("loop", "changes", "error", "message"),
    [
        ("user_code.loops:raises", {}, RuntimeError, "out of memory in my loop"),
        ("user_code.loops:nan", {}, LoopError, r"val_accuracy=nan in epoch 1; report a fraction"),
        ("user_code.loops:above_one", {}, LoopError, r"val_accuracy=57.0 in epoch 1"),
        ("user_code.loops:never_steps", {}, LoopError, "never called ctx.step in its first epoch"),
        ("user_code.loops:never_reports", {}, LoopError, "epoch 1 ended without ctx.report"),
        ("user_code.loops:returns_at_once", {}, LoopError, "returned without calling ctx.report"),
        ("user_code.loops:cut_short", {"epochs": 3}, LoopError, "reported 2 epochs of the 3"),
        ("user_code.loops:no_test", {"epochs": 1, "test": True}, LoopError, "report_test"),
    ],
)
def test_a_loop_that_breaks_the_contract_fails_the_run_in_one_line(loop, changes, error, message):
    with pytest.raises(error, match=message) as info:
        train(_config(loop, **changes))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("loop", "message"),
    [
        ("elsewhere.loops:good", "would import package 'elsewhere', which this process does not "
         "allow; if you trust the study's spec, set DIKD_ALLOW_IMPORTS=elsewhere"),
        ("user_code.nowhere:run", "does not import"),
        ("user_code.loops:missing", "has no attribute 'missing'"),
        ("user_code.loops:NOT_CALLABLE", "is a int, not a function"),
        ("user_code.loops:two_arguments", "cannot be called as fn(ctx)"),
    ],
)  # fmt: skip
def test_a_loop_that_cannot_be_used_is_refused_before_training(loop, message) -> None:
    for run in (check_data, train):
        with pytest.raises(ConfigError, match="field 'train.loop'") as info:
            run(_config(loop))
        assert message in str(info.value) and "\n" not in str(info.value)


# --- models of the user's own ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("elsewhere.nets:build", "would import package 'elsewhere'"),
        ("user_code.models:missing", "has no attribute 'missing'"),
        ("user_code.models:positional_only", "cannot be called as fn(num_classes=..., "),
        ("user_code.models:not_a_module", "returned a str, not a torch.nn.Module"),
        ("user_code.models:NOT_CALLABLE", "not a function or class"),
    ],
)
def test_a_user_model_that_cannot_be_used_is_one_line_naming_train_model(model, message):
    with pytest.raises(ConfigError, match="field 'train.model'") as info:
        build_model(model, num_classes=10, in_channels=1)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_user_model_is_checked_by_form_only_when_parsed() -> None:
    config = TrainConfig(model="elsewhere.nets:build")  # not allowed, not importable: parsed
    assert config.model == "elsewhere.nets:build"
    with pytest.raises(ConfigError, match="unknown model 'no-such-net'"):
        TrainConfig.from_dict({"model": "no-such-net"})


@pytest.mark.parametrize("scale", [1.5, 2.0, 4.0])
def test_every_conv_of_a_user_model_is_reduced(scale: float) -> None:
    from test_reduce import _hand_reduced_conv  # what a reduced layer must compute

    model = build_model("user_code.models:every_conv", num_classes=3, in_channels=2).double()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    calls = {}
    for conv in convs:
        conv.register_forward_hook(lambda m, inp, out: calls.__setitem__(m, (inp[0], out)))
    x = torch.randn(2, 2, 32, 32, dtype=torch.float64)
    with reduced(model, scale):
        model(downsample(x, scale)).sum().backward()
    later = False
    for conv in convs:  # depthwise, grouped, dilated, 5x5: pooled; 1x1: as it is
        inp, out = calls[conv]
        if conv.kernel_size == (1, 1):
            torch.testing.assert_close(out, conv(inp))
            continue
        with torch.no_grad():
            torch.testing.assert_close(out, _hand_reduced_conv(conv, inp, scale, later))
        later = not later
        assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0
    assert not any("forward" in conv.__dict__ for conv in convs)  # restored


def test_a_user_model_trains_in_dikds_own_loop() -> None:
    config = TrainConfig(model="user_code.models:every_conv", data="synthetic", subset=160,
                         image_size=16, epochs=1, batch_size=32, device="cpu",
                         schedule=Schedule("deterministic", frequency=0.5))  # fmt: skip
    check_data(config)
    result = train(config)
    assert result.reduced_steps > 0 and 0 < result.reduced_step_flops < result.full_step_flops


def test_an_installed_packages_model_by_entry_point_name(monkeypatch) -> None:
    import importlib.metadata

    from click.testing import CliRunner

    from objectives import list_models
    from searcher.cli import cli

    published = importlib.metadata.EntryPoint(
        name="every-conv", value="user_code.models:every_conv", group="dikd.models"
    )
    real = importlib.metadata.entry_points

    def entry_points(**selection):
        if selection.get("group") == "dikd.models":
            return [published]
        return real(**selection)

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    assert "every-conv" in list_models()
    assert "every-conv" in CliRunner().invoke(cli, ["models"]).output.split()
    assert TrainConfig(model="every-conv").model == "every-conv"
    model = build_model("every-conv", num_classes=3, in_channels=1)
    assert isinstance(model, nn.Module)
    monkeypatch.setenv(_imports.ALLOW_ENV, "")  # an entry point obeys the same allow-list
    with pytest.raises(ConfigError, match="would import package 'user_code'"):
        build_model("every-conv", num_classes=3, in_channels=1)
