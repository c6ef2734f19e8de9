"""acme's training loop: its own optimiser, cosine learning rate and evaluation.

`run(ctx)` is the loop as dikd's trial (`train.loop: acme.train:run`): dikd gives the seed,
the device, the epochs and the schedule, and measures around `ctx.step`. `run_pick` is the same
loop applying an exported schedule by itself (`objectives.ScheduledSteps`), without dikd's
search. Both step through `train_epoch`, which takes either helper's `step`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from acme.data import FASHION_MNIST, splits
from acme.model import AcmeNet

DEFAULTS: dict[str, Any] = {
    "lr": 0.05,  # peak learning rate
    "batch_size": 64,
    "train_size": 2048,  # training images
    "val_size": 1000,
    "test_size": 2000,
    "data_dir": FASHION_MNIST,
    "data_seed": 0,
}


def build(seed: int, params: dict[str, Any], epochs: int):
    """Model, optimiser, learning-rate schedule and data of one run (seeded by `seed`)."""
    p = {**DEFAULTS, **params}
    torch.manual_seed(seed)
    train_set, val_set, test_set = splits(
        p["data_dir"], p["train_size"], p["val_size"], p["test_size"], p["data_seed"]
    )
    loader = DataLoader(
        train_set,
        batch_size=p["batch_size"],
        shuffle=True,
        drop_last=True,
        generator=torch.Generator().manual_seed(seed),
    )
    model = AcmeNet(num_classes=10, in_channels=1)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=p["lr"], momentum=0.9, nesterov=True, weight_decay=5e-4
    )
    # Fitted to the run's epochs: a budget-curve run of fewer epochs anneals fully too.
    lr_schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs * len(loader))
    return model, optimizer, lr_schedule, loader, val_set, test_set


def train_epoch(model, loader, optimizer, lr_schedule, device, step) -> float:
    """One epoch; `step` is `ctx.step` or `ScheduledSteps.step`. Returns the mean loss."""
    model.train()
    total = torch.zeros((), device=device)
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        with step(model, x, optimizer) as x:  # downsampled, model reduced, on reduced steps
            loss = F.cross_entropy(model(x), y)
            loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        lr_schedule.step()
        total += loss.detach()
    return total.item() / len(loader)


@torch.no_grad()
def evaluate(model, dataset, device, batch_size: int = 500) -> float:
    model.eval()
    correct = 0
    for x, y in DataLoader(dataset, batch_size=batch_size):
        correct += (model(x.to(device)).argmax(1) == y.to(device)).sum().item()
    model.train()
    return correct / len(dataset)


def run(ctx) -> None:
    """The trial: dikd calls it for every search trial, budget-curve point and seed."""
    model, optimizer, lr_schedule, loader, val_set, test_set = build(
        ctx.seed, ctx.params, ctx.epochs_total
    )
    model.to(ctx.device)
    for _epoch in ctx.epochs(loader):
        loss = train_epoch(model, loader, optimizer, lr_schedule, ctx.device, ctx.step)
        ctx.report(val_accuracy=evaluate(model, val_set, ctx.device), loss=loss,
                   val_size=len(val_set))  # fmt: skip
    if ctx.test:
        ctx.report_test(evaluate(model, test_set, ctx.device), test_size=len(test_set))


def run_pick(pick_file: str, epochs: int, params: dict[str, Any] | None = None, seed: int = 0,
             device: str = "cpu") -> dict[str, float]:  # fmt: skip
    """Train with the schedule of a `dikd export` file, without dikd's search."""
    from objectives import ScheduledSteps

    model, optimizer, lr_schedule, loader, val_set, test_set = build(seed, params or {}, epochs)
    model.to(device)
    steps = ScheduledSteps.from_file(pick_file, total_steps=epochs * len(loader))
    for _epoch in range(epochs):
        train_epoch(model, loader, optimizer, lr_schedule, device, steps.step)
    return {"val_accuracy": evaluate(model, val_set, device),
            "test_accuracy": evaluate(model, test_set, device)}  # fmt: skip
