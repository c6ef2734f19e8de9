"""The share of a training step spent waiting for its batch, for full and reduced steps.

Image folders are decoded once into the image cache and then served like the small data sets:
from device memory when they fit, else gathered in host memory, pinned and copied while the
previous step runs ("streamed"). A step's wait is the time from asking for the batch to
having it on the device (crop, flip and normalisation included); the target is under 5%.

    python benchmarks/loader_wait.py --data openclipart --size 64            # the CPU
    python benchmarks/loader_wait.py --data synthetic --size 128 --model resnet18 --device cuda
"""

from __future__ import annotations

import argparse
import time

import torch

from objectives import Schedule, TrainConfig, load_data, resolve_device
from objectives._step import prepared_stepper
from objectives._tensor_data import TensorData


def _wait_share(data, stepper, config, scale: float, steps: int, device) -> tuple[float, float]:
    """(wait share, mean step seconds) over `steps` steps after two untimed ones."""
    optimizer = torch.optim.SGD(stepper.model.parameters(), lr=0.01, momentum=0.9)
    batches = data.train_batches(config.batch_size, torch.Generator().manual_seed(0))
    waited = total = 0.0
    for i in range(steps + 2):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        try:
            x, y = next(batches)
        except StopIteration:
            batches = data.train_batches(config.batch_size, torch.Generator().manual_seed(i))
            x, y = next(batches)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        got = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        stepper.loss(x, y, scale).backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= 2:
            waited += got - start
            total += time.perf_counter() - start
    return waited / total, total / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="openclipart")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    device = resolve_device(args.device)
    config = TrainConfig(
        model=args.model, data=args.data, image_size=args.size, batch_size=args.batch,
        device=str(device), schedule=Schedule("deterministic", 1.0, 2.0),
    )  # fmt: skip
    data = load_data(args.data, device=device, image_size=args.size, subset=None)
    kinds = {"on the device": data}
    if device.type == "cuda":  # the path for splits too big for the device's memory
        host = (data.train_images.cpu(), data.train_labels.cpu())
        val = (data.val_images.cpu(), data.val_labels.cpu())
        kinds["streamed"] = TensorData(data.info, host, val, augment=True, flip=True, device=device)
    info = data.info
    stepper = prepared_stepper(config, info.num_classes, info.in_channels, device)
    print(f"loader wait: {args.data} at {args.size}px, {args.model}, batch {args.batch}, "
          f"{info.train_size} training images, {args.steps} steps each, {device}")  # fmt: skip
    print(f"{'served':<16}{'step':<10}{'step ms':>9}{'waiting':>9}")
    for served, source in kinds.items():
        for name, scale in (("full", 1.0), ("reduced", 2.0)):
            share, seconds = _wait_share(source, stepper, config, scale, args.steps, device)
            print(f"{served:<16}{name:<10}{seconds * 1000:>9.1f}{share:>9.1%}")


if __name__ == "__main__":
    main()
