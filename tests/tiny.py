"""The tiny real training that the service's tests run: a trial takes about a second on a CPU."""

TINY_TRAIN = {
    "model": "resnet20",
    "data": "fashion-mnist",
    "subset": 600,
    "image_size": 16,
    "epochs": 2,
    "batch_size": 64,
}

# The schedule space most tests search: two policies, a frequency range, two scales.
TINY_SPACE = {
    "policy": {"choices": ["stochastic", "deterministic"]},
    "frequency": {"low": 0.2, "high": 0.8},
    "scale": {"choices": [2.0, 4.0]},
}


def tiny_spec(name: str, **changes) -> dict:
    """A study spec of tiny training: the plain model at half and the full budget, TINY_SPACE,
    a seeded random sampler, 3 trials; `changes` replace top-level keys."""
    spec = {
        "name": name,
        "train": TINY_TRAIN,
        "baseline": {"fractions": [0.5, 1.0]},
        "space": TINY_SPACE,
        "sampler": {"name": "random", "seed": 0},
        "n_trials": 3,
    }
    return {**spec, **changes}


# A study whose only search trial is the null schedule: scale 1 reduces nothing, so the
# "schedule" is the plain model at the full budget, and a confirmation must never call it a win.
NULL_SPEC = tiny_spec(
    "null",
    train={**TINY_TRAIN, "val_size": 500},
    space={"policy": "deterministic", "frequency": 0.5, "scale": 1.0, "kernel_pool": False},
)
NULL_TRIAL = 2  # the search trial, after the two baselines


def run_null_study(folder) -> str:
    """Run the null study in-process in `folder`; returns its storage URL."""
    import yaml
    from click.testing import CliRunner

    from searcher.cli import cli

    url = f"sqlite:///{folder / 'null.db'}"
    spec = folder / "null.yaml"
    spec.write_text(yaml.safe_dump({**NULL_SPEC, "storage": url}))
    run = CliRunner().invoke(cli, ["study", "run", str(spec)], catch_exceptions=False)
    assert run.exit_code == 0, run.output
    return url


def make_confirmed_study(folder, max_seeds: int = 4) -> str:
    """The null study, run and confirmed by `dikd confirm` in-process; its storage URL."""
    from click.testing import CliRunner

    from searcher.cli import cli

    url = run_null_study(folder)
    args = ["confirm", "null", "--storage", url, "--trial", str(NULL_TRIAL)]
    confirm = CliRunner().invoke(cli, [*args, "--max-seeds", str(max_seeds)])
    assert confirm.exit_code == 0, confirm.output
    return url


def stand_in_result(config, cost: float, accuracy: float, reduced_fraction: float = 0.0):
    """A TrainResult for a stand-in training of `config` (where training is not what a test
    is about): `cost` seconds, `accuracy`, and ten steps an epoch."""
    from objectives import EpochRecord, TrainResult

    steps = 10 * config.epochs
    reduced = round(reduced_fraction * steps)
    return TrainResult(
        train_time_s=cost,
        val_accuracy=accuracy,
        flops=1e9 * cost,
        full_step_flops=1e8,
        reduced_step_flops=2.5e7 if reduced else 0.0,
        reduced_steps=reduced,
        total_steps=steps,
        planned_steps=steps,
        stopped_early=False,
        history=[EpochRecord(config.epochs, cost, 1.0, accuracy, reduced)],
        device="cpu (stand-in)",
        versions={},
    )
