"""How `dikd confirm` walks the code, from `confirm_with_progress` down: the searcher files
it enters, in order, and how often it comes back to a file it had already left (issue 19).

A tiny null study is searched, then confirmed in-process (2 seeds) under `sys.setprofile`.
Two walks are printed, each a function counted once, the first time it is called (so that loops
over seeds and runs do not count), comprehensions and lambdas as part of their function:
- the study's walk: the functions called with an `optuna.Study` among their arguments
  (following the study object, as the issue did);
- every function's walk: every searcher function called.
A return is an entry into a file (or folder) the walk had entered before and left. Usage:

    python benchmarks/confirm_path.py
"""

from __future__ import annotations

import collections
import pathlib
import sys
import tempfile

import optuna

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
SEARCHER = str(ROOT / "searcher")


def trace_confirm(folder: pathlib.Path) -> tuple[list[str], list[str]]:
    """(the study's walk, every function's walk): the files of the functions `dikd confirm`
    first calls, in order, on a tiny null study."""
    from click.testing import CliRunner
    from tiny import NULL_TRIAL, run_null_study

    from searcher.cli import cli

    url = run_null_study(folder)
    study_walk: list[str] = []
    walk: list[str] = []
    seen: set = set()
    inside = False

    def profile(frame, event, arg):
        nonlocal inside
        code = frame.f_code
        if event != "call" or code.co_name.startswith("<") or code in seen:
            return
        inside = inside or code.co_name == "confirm_with_progress"
        if not inside or not code.co_filename.startswith(SEARCHER):
            return
        seen.add(code)
        file = str(pathlib.Path(code.co_filename).relative_to(ROOT / "searcher"))
        walk.append(file)
        arguments = code.co_varnames[: code.co_argcount + code.co_kwonlyargcount]
        if any(isinstance(frame.f_locals.get(a), optuna.Study) for a in arguments):
            study_walk.append(file)

    args = ["confirm", "null", "--storage", url, "--trial", str(NULL_TRIAL), "--max-seeds", "2",
            "--min-seeds", "2"]  # fmt: skip
    sys.setprofile(profile)
    try:
        run = CliRunner().invoke(cli, args)
    finally:
        sys.setprofile(None)
    assert run.exit_code == 0, run.output
    return study_walk, walk


def show(name: str, entries: list[str], unit: str = "files") -> None:
    """The walk's files in order (repeats merged), how often each is entered, and the returns."""
    walk = [f for i, f in enumerate(entries) if i == 0 or f != entries[i - 1]]
    counts = collections.Counter(walk)
    returns = len(walk) - len(counts)
    print(f"{name}: {len(counts)} {unit}, {returns} returns to one already left")
    print("  " + " -> ".join(f.removesuffix(".py") for f in walk))
    print(
        "  entered more than once: "
        + ", ".join(f"{f} {n}" for f, n in counts.most_common() if n > 1)
    )


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        study_walk, walk = trace_confirm(pathlib.Path(folder))
    show("the study's walk", study_walk)
    show("the study's walk by folder", [f.split("/")[0] for f in study_walk], "folders")
    show("every function's walk", walk)


if __name__ == "__main__":
    main()
