"""Checks that need a GPU; skipped elsewhere. benchmarks/gpu_check.sh runs them on one."""

import warnings

import pytest
import torch

from objectives import Schedule, TrainConfig, reduced, train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

SMALL = {"data": "synthetic", "image_size": 32, "epochs": 2, "batch_size": 64, "device": "cuda"}


def _host_syncs(config: TrainConfig) -> tuple[int, int]:
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = train(config)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    syncs = sum("synchroniz" in str(w.message) for w in caught)
    return syncs, result.total_steps


def test_the_step_loop_never_waits_for_the_gpu():
    # Host synchronisations come from per-epoch work (loss read, evaluation), so four times
    # the steps per epoch must not add any.
    schedule = Schedule("deterministic", 0.5, 2.0)
    few, few_steps = _host_syncs(TrainConfig(**SMALL, subset=640, schedule=schedule))
    many, many_steps = _host_syncs(TrainConfig(**SMALL, subset=2560, schedule=schedule))
    assert many_steps >= 4 * few_steps - 4
    assert many - few <= 2, f"{few} syncs for {few_steps} steps, {many} for {many_steps}"


def test_a_pooled_step_in_bf16_has_finite_gradients_and_well_under_the_full_steps_peak_memory():
    from objectives import build_model

    model = build_model("resnet20", num_classes=10, in_channels=3).cuda()
    model.to(memory_format=torch.channels_last)
    x = torch.randn(256, 3, 32, 32, device="cuda").contiguous(memory_format=torch.channels_last)

    def peak_mib(scale: float) -> float:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        inputs = torch.nn.functional.avg_pool2d(x, int(scale)) if scale > 1 else x
        with torch.autocast("cuda", dtype=torch.bfloat16):
            if scale > 1:
                with reduced(model, scale, kernel_pool=True):
                    out = model(inputs)
            else:
                out = model(inputs)
        out.float().sum().backward()
        assert out.shape == (256, 10) and all(p.grad.isfinite().all() for p in model.parameters())
        model.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() / 2**20

    full, pooled = peak_mib(1.0), peak_mib(2.0)
    # Activations shrink to a quarter; the padding copies of even kernels add some back
    # (measured on an H100: 151 MiB against 289).
    assert pooled < 0.6 * full, (full, pooled)


def test_training_on_the_gpu_learns_and_reports_the_gpu():
    result = train(TrainConfig(**SMALL, subset=2000, schedule=Schedule("stochastic", 0.5, 2.0)))
    assert "cuda" in result.device.lower() or "nvidia" in result.device.lower()
    assert result.val_accuracy > 0.3  # synthetic classes are separable; chance is 0.1
