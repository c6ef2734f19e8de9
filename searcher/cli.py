"""`dikd`: the command line. Exit codes: 0 success, 1 a failed run, 2 bad usage or input."""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import click
import optuna
from tqdm import tqdm

from objectives import (
    ALLOW_IMPORTS_ENV,
    ConfigError,
    allow_imports,
    check_data,
    describe_dataset,
    list_datasets,
    list_models,
    load_train_config,
    train,
    user_packages,
)
from searcher.study.record import CONFIRM_SETTINGS_ATTR, CONFIRMATION_OF_ATTR
from searcher.study.search import TrialsKeepFailingError
from searcher.study.secrets import mask_password
from searcher.study.shipped import find_spec, load_spec_file, specs_command
from searcher.study.spec import DEFAULT_STORAGE, STORAGE_ENV
from searcher.study.storage import open_storage
from searcher.verdict.front import PickError
from searcher.views.confirm_progress import confirm_with_progress, settings_from_options
from searcher.views.run_progress import _Progress, _run_local_workers

QUICKSTART_MAX_SEEDS = 4  # the quickstart, search and confirmation, fits 8 minutes on 2 cores


def _storage_url(storage_url: str | None) -> str:
    """The --storage URL, else $DIKD_STORAGE, else the default."""
    return storage_url or os.environ.get(STORAGE_ENV) or DEFAULT_STORAGE


storage_option = click.option(
    "--storage",
    "storage_url",
    default=None,
    metavar="URL",
    help=f"Study storage URL (default: ${STORAGE_ENV}, else {DEFAULT_STORAGE}).",
)


def _allow(_ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value:
        allow_imports(value.split(","))


allow_imports_option = click.option(
    "--allow-imports",
    metavar="PKG[,PKG]",
    default=None,
    expose_value=False,
    callback=_allow,
    help=f"Packages whose code the study's import paths may run (as ${ALLOW_IMPORTS_ENV}).",
)


def _count_option(name: str, default: int, text: str):
    """An option taking a whole number of at least 1."""
    return click.option(
        name, type=click.IntRange(min=1), default=default, show_default=True, help=text
    )


class _Group(click.Group):
    """Turns dikd's own input errors into one line on stderr and exit code 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (ConfigError, PickError) as e:
            click.echo(f"error: {mask_password(str(e))}", err=True)
            ctx.exit(2)
        except TrialsKeepFailingError as e:
            click.echo(f"error: {mask_password(str(e))}", err=True)
            ctx.exit(1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """dikd: search downsampling schedules (dynamic input and kernel downsampling) for CNN
    training with Optuna, against the honest baseline of training the plain model less."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # set_metric_names and heartbeats are marked experimental; users need not see that each time.
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)


@cli.command("train")
@click.option("--config", "config_path", required=True, type=click.Path(), help="YAML TrainConfig.")
@allow_imports_option
def train_command(config_path: str) -> None:
    """Run one training from a YAML file (or an exported pick) and print its result."""
    config = load_train_config(config_path)
    bar = tqdm(total=config.epochs, desc="epochs", unit="epoch")

    def on_epoch(epoch, result):
        bar.update(1)
        accuracy = "-" if result.val_accuracy is None else f"{result.val_accuracy:.4f}"
        bar.set_postfix(acc=accuracy, time=f"{result.train_time_s:.1f}s")

    try:
        result = train(config, on_epoch=on_epoch)
    except (ConfigError, FileNotFoundError) as e:  # bad input: a model, data set or folder
        bar.close()
        raise ConfigError(str(e)) from None
    except Exception as e:
        bar.close()
        click.echo(f"training failed: {type(e).__name__}: {e}", err=True)
        sys.exit(1)
    bar.close()
    test = "" if result.test_accuracy is None else f" test_accuracy={result.test_accuracy:.4f}"
    click.echo(
        f"train_time_s={result.train_time_s:.2f} val_accuracy={result.val_accuracy:.4f}{test} "
        f"flops={result.flops:.3e} reduced_steps={result.reduced_steps}/{result.total_steps} "
        f"device={result.device}"
    )


@cli.command("models")
def models_command() -> None:
    """List the model names `train.model` accepts."""
    click.echo("\n".join(list_models()))


@cli.command("datasets")
def datasets_command() -> None:
    """List the data set names `train.data` accepts, with what is installed of each."""
    for name in list_datasets():
        try:
            held = describe_dataset(name)
        except FileNotFoundError as e:
            held = f"not installed: {e}"
        click.echo(name if held is None else f"{name}: {held}")
    click.echo(
        "or your own Datasets: package.module:callable (docs/your-own-data.md); dikd adds "
        "random crops and flips to every data set unless augment: false"
    )


@cli.group("study")
def study_group() -> None:
    """Run, list and show studies."""


@study_group.command("run")
@click.argument("spec", metavar="SPEC")
@click.option("--n-trials", type=click.IntRange(min=1), help="Run at most N trials in this call.")
@storage_option
@_count_option("--jobs", 1, "Local worker processes sharing the study.")
@click.option("--gpus", default=None, metavar="0,1,..", help="One worker per GPU, pinned to it.")
@allow_imports_option
def study_run(spec, n_trials, storage_url, jobs, gpus) -> None:
    """Create the study of SPEC (a spec file, or a shipped spec's name: `dikd specs`), or
    resume it, and run trials until its budget is spent."""
    _, _, code = _run_study(spec, storage_url, n_trials=n_trials, jobs=jobs, gpus=gpus)
    if code:
        sys.exit(1)


@cli.command("worker")
@click.argument("name")
@storage_option
@click.option("--n-trials", type=click.IntRange(min=1), help="Run at most N trials, then stop.")
@click.option("--gpu", default=None, metavar="ID", help="Pin this worker to GPU ID.")
@click.option("--worker-id", default=None, help="Seeds this worker's sampler (default host-pid).")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@allow_imports_option
def worker_command(name, storage_url, n_trials, gpu, worker_id, quiet) -> None:
    """Join the existing study NAME from any machine and run its trials."""
    from searcher.study.worker import run_worker

    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    sys.exit(
        run_worker(
            name, _storage_url(storage_url), n_trials=n_trials, worker_id=worker_id, quiet=quiet
        )
    )


def _run_study(spec_name_or_path, storage_url, *, n_trials=None, jobs=1, gpus=None):
    """Create or resume the study of a spec and run its trials, here or in local workers.
    Returns the study, its spec and the exit code (1 when a worker failed)."""
    from searcher.study.search import create_or_resume, run_trials

    spec = load_spec_file(spec_name_or_path)
    if isinstance(find_spec(spec_name_or_path), Path):
        # A spec file named on the command line is trusted with the code it names (a shipped
        # spec names none); a study resumed from the database by name is not.
        allow_imports(user_packages(spec.train))
    url = spec.resolve_storage(storage_url)
    # Missing data, or user code that is not allowed or does not import: one line now, before
    # anything is stored, not three failed trials.
    check_data(spec.train)
    study = create_or_resume(spec, url)
    click.echo(f"study '{spec.name}' in {mask_password(url)}")
    progress = _Progress(study, spec.n_trials)
    try:
        if jobs > 1 or gpus:
            code = _run_local_workers(spec.name, url, jobs, gpus, n_trials, progress)
        else:
            run_trials(
                study,
                spec,
                max_trials=n_trials,
                on_trial=progress.on_trial,
                on_epoch=progress.on_epoch,
            )
            code = 0
    finally:
        progress.close()
    from searcher.views.dashboard import publish

    publish(study, spec)  # the dashboard's figure and notes
    _print_show(study, spec)
    return study, spec, code


def _print_show(study: optuna.Study, spec) -> None:
    from searcher.study.record import METRIC_NAMES
    from searcher.views.terminal import show_study

    click.echo(show_study(study, METRIC_NAMES[spec.objective]))


@study_group.command("list")
@storage_option
def study_list(storage_url) -> None:
    """List the studies in the storage."""
    url = _storage_url(storage_url)
    storage = open_storage(url, create=False)
    summaries = optuna.get_all_study_summaries(storage, include_best_trial=False)
    # A study and the sibling holding its confirmation runs are one study here.
    runs = {s.user_attrs[CONFIRMATION_OF_ATTR]: s for s in summaries
            if CONFIRMATION_OF_ATTR in s.user_attrs}  # fmt: skip
    studies = [s for s in summaries if CONFIRMATION_OF_ATTR not in s.user_attrs]
    counted = f"{len(studies)} stud{'y' if len(studies) == 1 else 'ies'}"
    click.echo(f"storage {mask_password(url)}: {counted}")
    for summary in studies:
        sibling = runs.get(summary.study_name)
        confirmed = (
            f"; {sibling.n_trials} confirmation runs in '{sibling.study_name}'" if sibling else ""
        )
        click.echo(f"  {summary.study_name}  ({summary.n_trials} trials{confirmed})")


@study_group.command("show")
@click.argument("name")
@storage_option
def study_show(name, storage_url) -> None:
    """Trials by state, the baseline curve and the Pareto front as tables."""
    from searcher.study.search import open_study

    study, spec = open_study(name, _storage_url(storage_url))
    _print_show(study, spec)


@cli.command("confirm")
@click.argument("name")
@_count_option("--top", 2, "Confirm the front's K best search trials by effective speedup.")
@click.option(
    "--trial",
    "numbers",
    type=int,
    multiple=True,
    metavar="N",
    help="Confirm trial N instead (repeatable).",
)
@click.option(
    "--min-seeds",
    type=click.IntRange(min=2),
    default=None,
    help="Seeds of the first look (default 3).",
)
@click.option(
    "--max-seeds",
    type=click.IntRange(min=2),
    default=None,
    help="Seeds at most, one added per look while undecided (default 8).",
)
@click.option(
    "--min-saving",
    type=click.FloatRange(0, 1, max_open=True),
    default=None,
    help="Cost a win must save at equal accuracy (default 0.05).",
)
@click.option(
    "--alpha",
    type=click.FloatRange(0, 0.5, min_open=True, max_open=True),
    default=None,
    help="False-win rate over all looks (default 0.05).",
)
@click.option(
    "--plain-runs",
    type=click.Choice(["read-point", "budgets"]),
    default=None,
    help="The plain model once a seed just above where the verdict reads it (default), or at "
    "the whole-epoch budgets around it and the full one.",
)
@click.option(
    "--futility/--no-futility",
    default=None,
    help="Stop a candidate undecided once a win is out of reach (default on).",
)
@storage_option
@allow_imports_option
def confirm_command(
    name, top, numbers, min_seeds, max_seeds, min_saving, alpha, plain_runs, futility, storage_url
) -> None:
    """Re-train NAME's best candidates and the plain model over fresh paired seeds, scored on
    the test split, until each verdict is win, loss or undecided at --max-seeds."""
    from searcher.study.search import open_study

    study, spec = open_study(name, _storage_url(storage_url), heartbeat=True)
    settings = settings_from_options(
        min_seeds, max_seeds, min_saving, alpha, plain_runs=plain_runs, futility=futility
    )
    confirm_with_progress(study, spec, list(numbers), top, settings)


@cli.command("export")
@click.argument("name")
@click.option(
    "--pick",
    "rule",
    default="auto",
    show_default=True,
    help="auto (the confirmed winner, else fastest-within:0.5), fastest-within:PP, "
    "most-accurate, knee or trial:N.",
)
@click.option("-o", "--output", required=True, type=click.Path(), help="YAML file to write.")
@click.option("--force", is_flag=True, help="Replace the output file if it exists.")
@storage_option
@allow_imports_option
def export_command(name, rule, output, force, storage_url) -> None:
    """Export the trial RULE picks as a config `dikd train --config` re-runs."""
    from searcher.study.search import open_study
    from searcher.views.export import export_document, write_export

    study, _ = open_study(name, _storage_url(storage_url))
    document = export_document(study, rule)
    path = write_export(document, output, overwrite=force)
    m = document["measured"]
    click.echo(
        f"trial {document['trial']} ({document['rule']}): {m['train_time_s']:.2f}s, "
        f"{100 * m['val_accuracy']:.2f}% -> {path}"
    )
    click.echo(f"confirmation: {document['confirmation']['status']}")
    click.echo(document["payback"]["text"])


@cli.command("report")
@click.argument("name")
@click.option("-o", "--output", required=True, type=click.Path(), help="HTML file to write.")
@click.option("--force", is_flag=True, help="Replace the output file if it exists.")
@storage_option
@allow_imports_option
def report_command(name, output, force, storage_url) -> None:
    """Write one self-contained HTML page of plots for the study."""
    from searcher.study.search import open_study
    from searcher.views.report import write_report

    if Path(output).exists() and not force:
        raise ConfigError(f"{output} exists; choose another -o path or pass --force to replace it")
    study, spec = open_study(name, _storage_url(storage_url))
    write_report(study, spec, output)
    click.echo(f"report -> {output}")


@cli.command("dashboard")
@storage_option
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Interface to bind; the dashboard has no authentication.",
)
@click.option("--port", default=8080, show_default=True, type=int)
def dashboard_command(storage_url, host, port) -> None:
    """Serve optuna-dashboard on the study storage."""
    from optuna_dashboard import run_server

    url = _storage_url(storage_url)
    click.echo(f"optuna-dashboard for {mask_password(url)} on http://{host}:{port}/")
    run_server(open_storage(url, create=False), host=host, port=port)


@cli.command("quickstart")
@click.option("--spec", default="quickstart", show_default=True, help="Spec file or shipped name.")
@click.option(
    "--out",
    default="quickstart",
    show_default=True,
    type=click.Path(),
    help="Folder for the exported pick and the report.",
)
@storage_option
def quickstart_command(spec, out, storage_url) -> None:
    """The main job: run the quickstart study, confirm its top candidate over fresh seeds,
    export the confirmed winner (or say that none beats training less), write the report."""
    from searcher.verdict.statistics import Settings
    from searcher.views.export import export_document, write_export
    from searcher.views.report import write_report

    study, study_spec, _ = _run_study(spec, storage_url)
    url = study_spec.resolve_storage(storage_url)
    click.echo("")
    if study.user_attrs.get(CONFIRM_SETTINGS_ATTR) is None:
        settings = Settings(max_seeds=QUICKSTART_MAX_SEEDS)
    else:
        settings = None  # a resumed quickstart keeps the settings it was confirmed with
    confirm_with_progress(study, study_spec, [], 1, settings)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    report = folder / "report.html"
    write_report(study, study_spec, report)
    try:
        document = export_document(study, "auto")
        path = write_export(document, folder / "best.yaml", overwrite=True)
        click.echo(f"\nexported the confirmed winner -> {path}")
    except PickError as e:
        click.echo(f"\nverdict: {e}")
    from searcher.verdict.payback import payback

    click.echo(payback(study).text())
    click.echo(f"report -> {report}")
    click.echo(
        f"dashboard: .venv/bin/dikd dashboard --storage {mask_password(url)}  "
        "(then open http://127.0.0.1:8080/)"
    )


cli.add_command(specs_command)


def main() -> None:
    cli(prog_name="dikd")
