"""The same model and data in PyTorch Lightning, with an exported schedule applied by
`objectives.lightning.ScheduleCallback` (extra `lightning`)."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from acme.data import splits
from acme.model import AcmeNet
from acme.train import DEFAULTS


class AcmeModule(pl.LightningModule):
    def __init__(self, lr: float = DEFAULTS["lr"], total_steps: int = 1) -> None:
        super().__init__()
        self.net = AcmeNet(num_classes=10, in_channels=1)
        self.lr, self.total_steps = lr, total_steps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_accuracy", (self(x).argmax(1) == y).float().mean(), prog_bar=True)

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9, nesterov=True,
                              weight_decay=5e-4)  # fmt: skip
        cosine = torch.optim.lr_scheduler.CosineAnnealingLR(opt, self.total_steps)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": cosine, "interval": "step"}}


def fit_pick(pick_file: str, epochs: int, params: dict[str, Any] | None = None, seed: int = 0,
             **trainer_options: Any) -> pl.Trainer:  # fmt: skip
    """Train acme's model in a Lightning Trainer with the schedule of a `dikd export` file."""
    from objectives.lightning import ScheduleCallback

    p = {**DEFAULTS, **(params or {})}
    pl.seed_everything(seed, verbose=False)
    train_set, val_set, _ = splits(p["data_dir"], p["train_size"], p["val_size"], 0,
                                   p["data_seed"])  # fmt: skip
    train = DataLoader(train_set, batch_size=p["batch_size"], shuffle=True, drop_last=True)
    val = DataLoader(val_set, batch_size=500)
    module = AcmeModule(p["lr"], total_steps=epochs * len(train))
    trainer = pl.Trainer(max_epochs=epochs, callbacks=[ScheduleCallback(pick_file)],
                         **trainer_options)  # fmt: skip
    trainer.fit(module, train, val)
    return trainer
