"""`dikd dashboard`: optuna-dashboard on a real (tiny) dikd study, in-process through its WSGI app
and in Debian's Chromium through Playwright."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import optuna
import pytest
from click.testing import CliRunner
from ports import reserve_port

from searcher.cli import cli, dashboard_command
from searcher.study.spec import STORAGE_ENV
from searcher.study.storage import open_storage

METRICS = ["train_time_s", "val_accuracy"]
N_TRIALS = 5
TINY_SPEC = """\
name: tiny
storage: sqlite:///tiny.db
train:
  {model: resnet20, data: fashion-mnist, subset: 600, image_size: 16, epochs: 2, batch_size: 64}
baseline: {fractions: [0.5, 1.0]}
space: {frequency: {low: 0.2, high: 0.8}, scale: {choices: [2.0, 4.0]}}
n_trials: 5
"""
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
MISSING_BROWSER = "; `make test` installs it (Chromium with apt, playwright with the dev extras)"


def _env() -> dict[str, str]:
    """The environment without $DIKD_STORAGE, which would send the study elsewhere."""
    return {k: v for k, v in os.environ.items() if k != STORAGE_ENV}


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory) -> str:
    """A finished 5-trial study made by `dikd study run`; returns its storage URL."""
    folder = tmp_path_factory.mktemp("dashboard")
    (folder / "tiny.yaml").write_text(TINY_SPEC)
    cwd = os.getcwd()
    os.chdir(folder)
    try:  # in-process: a subprocess would add five seconds of imports and nothing else
        run = CliRunner().invoke(cli, ["study", "run", "tiny.yaml"], catch_exceptions=False)
    finally:
        os.chdir(cwd)
    assert run.exit_code == 0, f"dikd study run failed:\n{run.stdout}\n{run.stderr}"
    url = f"sqlite:///{folder / 'tiny.db'}"
    study = optuna.load_study(study_name="tiny", storage=url)
    complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(complete) == N_TRIALS, run.stdout
    assert study.metric_names == METRICS
    return url


# -- in-process WSGI -------------------------------------------------------------------------


def _wsgi_get(app, path: str, query: str = "") -> tuple[str, dict[str, str], bytes]:
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    started: dict = {}

    def start_response(status, headers, exc_info=None):
        started["status"], started["headers"] = status, dict(headers)

    chunks = app(environ, start_response)
    try:
        body = b"".join(chunks)
    finally:
        getattr(chunks, "close", lambda: None)()
    return started["status"], started["headers"], body


def _json(body: bytes):
    data = json.loads(body)
    # The plot routes answer with plotly's own JSON string, passed through as the body.
    return json.loads(data) if isinstance(data, str) else data


def test_wsgi_api_lists_the_study_its_trials_and_pareto_front(tiny_study):
    import optuna_dashboard

    app = optuna_dashboard.wsgi(open_storage(tiny_study))
    study = optuna.load_study(study_name="tiny", storage=tiny_study)

    status, headers, body = _wsgi_get(app, "/api/studies")
    assert status == "200 OK"
    assert headers["Content-Type"].startswith("application/json")
    summaries = {s["study_name"]: s for s in _json(body)["study_summaries"]}
    assert list(summaries) == ["tiny"]
    assert summaries["tiny"]["directions"] == ["minimize", "maximize"]
    study_id = summaries["tiny"]["study_id"]

    status, _, body = _wsgi_get(app, f"/api/studies/{study_id}", "after=0")
    assert status == "200 OK"
    detail = _json(body)
    assert detail["name"] == "tiny"
    assert detail["directions"] == ["minimize", "maximize"]
    assert detail["objective_names"] == METRICS
    trials = detail["trials"]
    assert [t["number"] for t in trials] == list(range(N_TRIALS))
    assert all(t["state"] == "Complete" and len(t["values"]) == 2 for t in trials)
    by_number = {t.number: t for t in study.trials}
    for t in trials:
        assert t["values"] == pytest.approx(by_number[t["number"]].values)
    # The dashboard's Pareto front is the study's.
    front = sorted(t["number"] for t in detail["best_trials"])
    assert front == sorted(t.number for t in study.best_trials)
    assert front

    status, _, body = _wsgi_get(app, f"/api/studies/{study_id}/plot/pareto_front")
    assert status == "200 OK"
    figure = _json(body)
    assert figure["layout"]["xaxis"]["title"]["text"] == "train_time_s"
    assert figure["layout"]["yaxis"]["title"]["text"] == "val_accuracy"
    plotted = sorted(x for trace in figure["data"] for x in trace.get("x", []))
    assert plotted == pytest.approx(sorted(t["values"][0] for t in trials))

    status, _, body = _wsgi_get(app, f"/api/studies/{study_id + 1000}")
    assert status.startswith("404")
    assert "not found" in _json(body)["reason"]


# -- the served dashboard in Chromium ---------------------------------------------------------


# A deadline only: the server answers in seconds, but its imports take a minute on a loaded
# machine (the suite once failed here at 30 s).
SERVER_START_S = 120


@contextlib.contextmanager
def _served(storage_url: str, log_dir: Path):
    """`dikd dashboard` in a subprocess on a free port; yields its base URL."""
    reservation = reserve_port()  # held until the server answers on it
    port = reservation.getsockname()[1]
    log_path = log_dir / "server.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "searcher", "dashboard", "--storage", storage_url]
            + ["--host", "127.0.0.1", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=_env(),
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if proc.poll() is not None:
                pytest.fail(
                    f"dikd dashboard exited with {proc.returncode}:\n{log_path.read_text()}"
                )
            try:
                with urllib.request.urlopen(f"{base}/api/meta", timeout=2) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"dikd dashboard did not answer in {SERVER_START_S} s:\n{log_path.read_text()}"
                )
            time.sleep(0.3)
        reservation.close()
        yield base
    finally:
        reservation.close()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def dashboard_server(tiny_study, tmp_path_factory):
    with _served(tiny_study, tmp_path_factory.mktemp("dashboard-server")) as base:
        yield base


def _require_browser():
    """Playwright's sync API, or a failure (not a skip) naming `make test` if a part is missing."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the Python package playwright is missing" + MISSING_BROWSER)
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing" + MISSING_BROWSER)
    return sync_playwright


def test_browser_shows_the_pareto_front_with_metric_names(dashboard_server, tiny_study, tmp_path):
    sync_playwright = _require_browser()
    from playwright.sync_api import expect

    study = optuna.load_study(study_name="tiny", storage=tiny_study)
    with urllib.request.urlopen(f"{dashboard_server}/api/studies", timeout=10) as r:
        [summary] = json.load(r)["study_summaries"]
    study_url = f"/dashboard/studies/{summary['study_id']}"
    wait = 20_000  # ms; the machines running the tests are shared

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(wait)
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))

            # The study list, then the study: its first view (History) holds the Pareto front.
            page.goto(f"{dashboard_server}/dashboard")
            link = page.locator('a[href^="/dashboard/studies/"]', has_text="tiny")
            expect(link).to_have_attribute("href", study_url, timeout=wait)
            expect(link).to_contain_text("MINIMIZE, MAXIMIZE", timeout=wait)
            link.click()
            page.wait_for_url(f"**{study_url}")
            heading = page.get_by_role("heading", name="Pareto Front")
            expect(heading).to_be_visible(timeout=wait)
            card = page.locator(".MuiCard-root").filter(has=heading)
            expect(card).to_have_count(1, timeout=wait)
            # The metric names label the objectives: X is the cost, Y the accuracy.
            for name in ["Objective X:", *METRICS]:
                expect(card).to_contain_text(name, timeout=wait)
            text = card.inner_text()
            assert text.index("Objective X:") < text.index("train_time_s")
            assert text.index("train_time_s") < text.index("Objective Y:")
            assert text.index("Objective Y:") < text.index("val_accuracy")

            # One marker per completed trial, at the trials' values.
            graph = page.locator("#graph-pareto-front")
            expect(graph.locator(".scatterlayer .point")).to_have_count(N_TRIALS, timeout=wait)
            xs = graph.evaluate("g => g.data.flatMap(t => Array.from(t.x || []))")
            assert sorted(xs) == pytest.approx(sorted(t.values[0] for t in study.trials))

            # The Best Trials card lists the study's Pareto front.
            best_heading = page.get_by_role("heading", name="Best Trials")
            best = page.locator(".MuiCard-root").filter(has=best_heading)
            for t in study.best_trials:
                expect(best).to_contain_text(f"Trial {t.number}", timeout=wait)

            shot = tmp_path / "pareto_front.png"
            page.screenshot(path=str(shot), full_page=True)
            card.screenshot(path=str(tmp_path / "pareto_front_card.png"))
        finally:
            browser.close()
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 20_000
    assert errors == []


# -- binding ----------------------------------------------------------------------------------


def test_dashboard_binds_loopback_by_default(monkeypatch, tmp_path):
    import optuna_dashboard

    host = next(p for p in dashboard_command.params if p.name == "host")
    assert host.default == "127.0.0.1"
    help_text = CliRunner().invoke(cli, ["dashboard", "--help"]).output
    assert "127.0.0.1" in help_text and "no authentication" in help_text

    calls = []
    monkeypatch.setattr(
        optuna_dashboard, "run_server", lambda storage, **kw: calls.append((storage, kw))
    )
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    open_storage(url)  # an empty study storage; the dashboard refuses a file that is not there
    result = CliRunner().invoke(cli, ["dashboard", "--storage", url])
    assert result.exit_code == 0, result.output
    assert "http://127.0.0.1:8080/" in result.output
    [(storage, kw)] = calls
    assert kw == {"host": "127.0.0.1", "port": 8080}
    assert isinstance(storage, optuna.storages.RDBStorage)


def test_browser_shows_the_verdict_note_and_figure(confirmed_null_study, monkeypatch) -> None:
    """After `dikd confirm`, the study's page holds the verdict (its note) and the figure of
    the budget curves with the confirmed intervals; baseline and confirmation trials say
    what they are in their notes."""
    sync_playwright = _require_browser()
    from playwright.sync_api import expect
    from tiny import NULL_TRIAL

    monkeypatch.delenv(STORAGE_ENV, raising=False)
    url, folder = confirmed_null_study  # tests/searcher/conftest.py
    wait = 20_000
    with _served(url, folder) as base, sync_playwright() as p:
        with urllib.request.urlopen(f"{base}/api/studies", timeout=10) as r:
            listed = {s["study_name"]: s for s in json.load(r)["study_summaries"]}
        # The confirmation runs: a sibling study, listed beside the search, one click away.
        assert sorted(listed) == ["null", "null.confirm"]
        summary = listed["null"]
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(wait)
            study_url = f"{base}/dashboard/studies/{summary['study_id']}"
            page.goto(study_url)  # History: the built-in charts, then the figure dikd saved
            figure = page.locator("[id='user-defined-plot:dikd-verdict']")
            expect(figure).to_be_visible(timeout=wait)
            names = figure.evaluate("g => g.data.map(t => t.name)")
            assert any(n.startswith(f"trial {NULL_TRIAL}: ") for n in names), names
            assert "confirmation: plain model per seed (test)" in names
            page.goto(f"{study_url}/note")  # the study's note: the verdict
            note = page.get_by_text("dikd verdict: does a schedule beat training")
            expect(note).to_be_visible(timeout=wait)
            expect(page.get_by_text("Bonferroni", exact=False).first).to_be_visible(timeout=wait)
            page.screenshot(path=str(folder / "verdict.png"), full_page=True)
        finally:
            browser.close()
    study = optuna.load_study(study_name="null", storage=url)
    runs = optuna.load_study(study_name="null.confirm", storage=url)
    from optuna_dashboard import get_note

    assert "`null.confirm`" in get_note(study) and "`null`" in get_note(runs)
    for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)):
        text = get_note(optuna.Trial(study, t._trial_id))
        role = t.user_attrs["role"]
        assert role != "confirm"  # every figure the dashboard draws of the search: the search
        if role == "baseline":
            assert text.startswith("**Baseline**")
        else:  # a search trial: its speedups, computed when the note was written
            assert text.startswith("**Search trial**") and "effective speedup" in text
    confirmation = runs.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert confirmation and all(t.user_attrs["role"] == "confirm" for t in confirmation)
    for t in confirmation:
        assert get_note(optuna.Trial(runs, t._trial_id)).startswith("**Confirmation run**")
