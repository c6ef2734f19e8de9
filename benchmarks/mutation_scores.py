"""The mutation score per module (and for the budget logic) from a finished `make mutation`.

Reads mutmut's per-file results under mutants/ and prints killed/total per module, then the
surviving mutants by name (`mutmut show NAME` prints one's diff). A timeout counts as killed
(the mutant made the tests hang); "no tests" mutants are in code no selected test reaches.

    python benchmarks/mutation_scores.py
"""

from __future__ import annotations

import collections
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# mutmut's exit codes (mutmut.stats.status_by_exit_code), folded into four outcomes.
KILLED = {1, 3, 36, 24, -24, 152, 255, -9, -11}
SURVIVED = {0}
NO_TESTS = {5, 33}
# The budget logic is a few functions of two larger modules: scored as one group.
BUDGET = ("x_budget_left_", "x__time_up_", "x__wait_for_running_", "_Objectiveǁobjective_",
          "x_count_trials_", "x__not_confirmation_")  # fmt: skip


def group(module: str, name: str) -> str | None:
    if module in ("searcher.study.search", "searcher.study.storage"):
        budget = any(b in name for b in BUDGET)
        return "budget logic (study/search.py, study/storage.py)" if budget else None
    return module


def main() -> int:
    metas = sorted((ROOT / "mutants").rglob("*.py.meta"))
    if not metas:
        print("no mutmut results under mutants/: run `make mutation` first")
        return 1
    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    survivors: dict[str, list[str]] = collections.defaultdict(list)
    for meta in metas:
        module = ".".join(meta.relative_to(ROOT / "mutants").with_suffix("").with_suffix("").parts)
        for name, code in json.loads(meta.read_text())["exit_code_by_key"].items():
            key = group(module, name)
            if key is None or code is None:  # not in the selection, or not run
                continue
            outcome = (
                "killed" if code in KILLED else
                "survived" if code in SURVIVED else
                "no tests" if code in NO_TESTS else f"other ({code})"
            )  # fmt: skip
            counts[key][outcome] += 1
            if outcome != "killed":
                survivors[key].append(f"{name} [{outcome}]")
    for key, c in counts.items():
        total = sum(c.values())
        rest = ", ".join(f"{n} {o}" for o, n in sorted(c.items()) if o != "killed")
        print(f"{key}: {c['killed']}/{total} killed ({100 * c['killed'] / total:.1f}%); {rest}")
    for key, names in survivors.items():
        print(f"\n{key}:")
        for name in names:
            print(f"  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
