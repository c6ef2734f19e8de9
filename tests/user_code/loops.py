"""Training loops of a user's own on random data: `good` and the ways a loop can go wrong."""

from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F
from torch import nn

STEPS = 4  # steps per epoch
SEEN: list[tuple[str, tuple[int, ...]]] = []  # (phase, input shape) seen by the last good run
EVALUATING = False
BN_TRACE: list[tuple[str, int, float]] = []  # (when, num_batches_tracked, |running_mean|)


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        phase = "eval" if EVALUATING else "train" if self.training else "other"  # other: FLOPs
        SEEN.append((phase, tuple(x.shape)))
        return self.head(torch.relu(self.bn(self.conv(x))).mean(dim=(2, 3)))


def _data(seed: int):
    g = torch.Generator().manual_seed(seed)
    xs = [torch.randn(8, 3, 16, 16, generator=g) + 2.0 for _ in range(STEPS)]
    ys = [torch.randint(0, 2, (8,), generator=g) for _ in range(STEPS)]
    return list(zip(xs, ys))


def good(ctx):
    global EVALUATING
    SEEN.clear()
    BN_TRACE.clear()
    model = Net()
    opt = torch.optim.SGD(model.parameters(), lr=ctx.params.get("lr", 0.1))
    data = _data(ctx.seed)
    for _epoch in ctx.epochs(data):
        for i, (x, y) in enumerate(data):
            with ctx.step(model, x, opt if ctx.params.get("give_optimizer", True) else None) as x:
                if i == 0:
                    BN_TRACE.append(("first step", int(model.bn.num_batches_tracked),
                                     float(model.bn.running_mean.abs().sum())))  # fmt: skip
                F.cross_entropy(model(x), y).backward()
                if ctx.params.get("step_inside", False):  # as Lightning does: within the step
                    opt.step()
                    opt.zero_grad()
            if not ctx.params.get("step_inside", False):
                opt.step()
                opt.zero_grad()
        BN_TRACE.append(("report", int(model.bn.num_batches_tracked),
                         float(model.bn.running_mean.abs().sum())))  # fmt: skip
        time.sleep(ctx.params.get("eval_sleep", 0.0))  # an evaluation, left out of the time
        model.eval()
        EVALUATING = True
        with torch.no_grad():
            model(data[0][0])
        EVALUATING = False
        model.train()
        ctx.report(val_accuracy=ctx.params.get("accuracy", 0.5))
    if ctx.test:
        ctx.report_test(0.5, test_size=10)
    return "ignored"


def sleeper(ctx):
    """A stand-in training: sleeps and reports (what a benchmark of many workers needs)."""
    model, x = nn.Identity(), torch.zeros(1, 1, 1, 1)
    for _epoch in ctx.epochs(2):
        for _ in range(2):
            with ctx.step(model, x):
                time.sleep(ctx.params.get("sleep_s", 0.01))
        ctx.report(val_accuracy=0.5)
    if ctx.test:
        ctx.report_test(0.5)


def raises(ctx):
    raise RuntimeError("out of memory in my loop")


def nan(ctx):
    ctx.params["accuracy"] = math.nan
    good(ctx)


def above_one(ctx):
    ctx.params["accuracy"] = 57.0  # a percentage, not a fraction
    good(ctx)


def never_steps(ctx):
    for _epoch in ctx.epochs(3):
        ctx.report(val_accuracy=0.5)


def _forward_step(ctx, model: nn.Module) -> None:
    """One step of the broken loops below: a forward pass on a blank batch, no learning."""
    with ctx.step(model, torch.zeros(2, 3, 8, 8)) as x:
        model(x)


def never_reports(ctx):
    model = Net()
    for _ in ctx.epochs(1):
        _forward_step(ctx, model)


def returns_at_once(ctx):
    ctx.epochs(1)


def cut_short(ctx):
    """Runs one epoch fewer than asked (as a loop that ignores ctx.epochs_total would)."""
    model = Net()
    for epoch in ctx.epochs(1):
        _forward_step(ctx, model)
        ctx.report(val_accuracy=0.5)
        if epoch == ctx.epochs_total - 1:
            break


def no_test(ctx):
    model = Net()
    for _ in ctx.epochs(1):
        _forward_step(ctx, model)
        ctx.report(val_accuracy=0.5)


def two_arguments(ctx, other):
    pass


NOT_CALLABLE = 3
