"""What `dikd confirm` (and the quickstart's confirmation) does around `confirmation.confirm`:
settings from the command's options, progress on the terminal, the verdict table."""

from __future__ import annotations

import sys

import click
from tqdm import tqdm

from objectives import ConfigError
from searcher.study.secrets import mask_password


def settings_from_options(min_seeds, max_seeds, min_saving, alpha, plain_runs=None, futility=None):
    """The confirmation settings the options ask for; None when none is given."""
    from searcher.verdict.statistics import Settings

    given = {"min_seeds": min_seeds, "max_seeds": max_seeds, "min_saving": min_saving,
             "alpha": alpha, "plain_runs": plain_runs, "futility": futility}  # fmt: skip
    given = {k: v for k, v in given.items() if v is not None}
    if not given:
        return None
    try:
        return Settings(**given)
    except ValueError as e:
        raise ConfigError(f"{e}; change --min-seeds/--max-seeds/--alpha/--min-saving") from None


def confirm_with_progress(study, spec, numbers, top, settings):
    """Confirm the chosen candidates with a progress bar and a line per run, publish to the
    dashboard whatever happens, and print the verdict table; a failed run exits 1."""
    from searcher.verdict.confirmation import ConfirmationFailedError, confirm
    from searcher.verdict.plan import plan_confirmation
    from searcher.views.dashboard import publish
    from searcher.views.terminal import show_verdicts

    plan = plan_confirmation(study, spec, settings, top, numbers)
    numbers = ", ".join(str(c.number) for c in plan.candidates)
    click.echo(
        f"confirming trial(s) {numbers} of '{study.study_name}' over fresh paired seeds "
        f"({plan.settings.min_seeds}-{plan.settings.max_seeds}), scored on the test split"
    )
    bar = tqdm(desc="  epochs", unit="ep", leave=False, disable=None)

    def on_epoch(epoch, total):
        if epoch == 1:
            bar.reset(total=total)
        bar.update(1)

    def on_run(run, cost, result):
        click.echo(f"  {run.key}: cost {cost:.4g}, test accuracy {100 * result.test_accuracy:.2f}%")

    try:
        confirm(study, spec, plan, on_run=on_run, on_epoch=on_epoch)
    except ConfirmationFailedError as e:
        bar.close()
        click.echo(f"error: {mask_password(str(e))}", err=True)
        sys.exit(1)
    finally:
        bar.close()
        publish(study, spec)
    click.echo(show_verdicts(study))
    from searcher.verdict.payback import payback

    click.echo(payback(study).text())
