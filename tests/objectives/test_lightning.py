"""The Lightning callback, in a real `Trainer` on the CPU (a tiny model, a few steps)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

pl = pytest.importorskip("lightning.pytorch")

from objectives import Schedule  # noqa: E402
from objectives.lightning import ScheduleCallback  # noqa: E402


class Tiny(pl.LightningModule):
    """Calls its network as `self.net(x)`, not `self(x)`: the callback must not rely on it."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
            nn.Conv2d(4, 4, 5, padding=2, groups=2), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(4, 2),
        )  # fmt: skip
        self.seen: list[tuple[str, int]] = []  # (stage, input width)
        self.lrs: list[float] = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        self.seen.append(("train", x.shape[-1]))
        return F.cross_entropy(self.net(x), y)

    def validation_step(self, batch, batch_idx):
        x, _ = batch
        self.seen.append(("val", x.shape[-1]))

    def configure_optimizers(self):
        module = self

        class Recording(torch.optim.SGD):
            def step(self, closure=None):
                # Inside the step hooks; Lightning runs the batch's forward in the closure.
                module.lrs.append(self.param_groups[0]["lr"])
                return super().step(closure)

        return Recording(self.parameters(), lr=0.1)


def _loader(n: int) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(n, 3, 16, 16, generator=g), torch.randint(0, 2, (n,)))
    return DataLoader(data, batch_size=4)


class WithForward(Tiny):
    def forward(self, x):
        return self.net(x)


def _fit(schedule: Schedule, epochs: int = 2, module: Tiny | None = None):
    module, callback = module or Tiny(), ScheduleCallback(schedule)
    trainer = pl.Trainer(
        max_epochs=epochs, accelerator="cpu", callbacks=[callback], logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0,
    )  # fmt: skip
    trainer.fit(module, _loader(16), _loader(8))
    return module, callback


def test_reduced_batches_run_downsampled_and_validation_at_full_resolution() -> None:
    schedule = Schedule("deterministic", frequency=0.5, scale=2.0, end=0.5)
    module, callback = _fit(schedule)
    total = 2 * 4  # two epochs of four batches
    assert callback.steps is not None and callback.steps.total_steps == total
    widths = [w for stage, w in module.seen if stage == "train"]
    expected = [8 if schedule.is_reduced(i, total) else 16 for i in range(total)]
    assert widths == expected and widths.count(8) == callback.reduced_batches == 2
    assert all(w == 16 for stage, w in module.seen if stage == "val")
    assert not any("forward" in m.__dict__ for m in module.modules())  # restored


def test_lr_scale_applies_to_the_optimizer_step_of_a_reduced_batch_only() -> None:
    schedule = Schedule("deterministic", frequency=0.5, scale=2.0, lr_scale=2.0)
    module, _ = _fit(schedule, epochs=1)
    reduced = [schedule.is_reduced(i, 4) for i in range(4)]
    assert [w == 8 for s, w in module.seen if s == "train"] == reduced == [False, True] * 2
    assert module.lrs == pytest.approx([0.2 if r else 0.1 for r in reduced])
    assert module.optimizers().optimizer.param_groups[0]["lr"] == 0.1  # restored exactly


def test_a_batch_that_cannot_be_changed_in_place_is_one_line() -> None:
    from objectives import ConfigError
    from objectives.lightning import _image_slot

    with pytest.raises(ConfigError, match="a list or a dict"):
        _image_slot((torch.zeros(1, 3, 4, 4), torch.zeros(1)))
    assert _image_slot({"label": torch.zeros(2), "image": torch.zeros(2, 3, 4, 4)}) == "image"


def test_a_mostly_reduced_run_ends_with_bn_statistics_re_estimated_at_full_resolution() -> None:
    # bn="freeze": reduced batches track nothing, so every tracked batch is the re-estimation's,
    # which must run after the last batch's reduced block (Lightning steps inside it).
    schedule = Schedule("deterministic", frequency=1.0, scale=2.0)
    module, callback = _fit(schedule, module=WithForward())
    norm = module.net[1]
    assert callback.reduced_batches == 8
    assert callback.steps is not None and callback.steps.bn_reestimation_batches == 8
    assert int(norm.num_batches_tracked) == 8 and norm.running_var.ne(1).all()
    with pytest.warns(UserWarning, match="has no forward"):  # it cannot: said, not hidden
        module, callback = _fit(schedule)
    assert int(module.net[1].num_batches_tracked) == 0
