"""The spec's searchable fields come from `Schedule`'s own declarations: bounds and choices once."""

from __future__ import annotations

import dataclasses

import pytest
from tiny import TINY_TRAIN

from objectives import SCHEDULE_FIELDS, ConfigError, Schedule
from searcher.study.spec import SEARCHABLE, SearchSpace, parse_spec

SEARCHED = [rule for rule in SCHEDULE_FIELDS.values() if rule.searchable]


def _spec(space: dict) -> dict:
    return {"name": "s", "train": TINY_TRAIN, "n_trials": 10, "space": space}


def _bad_value(rule):
    """A value outside what the field allows."""
    return rule.bounds[1] + 1 if rule.bounds is not None else "no-such-choice"


def test_searchable_fields_are_the_schedules_in_its_order_then_epochs():
    names = [f.name for f in dataclasses.fields(Schedule) if f.name != "seed"]
    assert SEARCHABLE == (*names, "epochs")
    assert set(SearchSpace.model_fields) == set(SEARCHABLE)


def test_a_field_left_out_of_the_space_is_fixed_at_the_schedules_default_or_searched():
    space = SearchSpace()
    for rule in SEARCHED:
        value = getattr(space, rule.name)
        assert value == rule.default or rule.name in ("policy", "frequency", "scale")


@pytest.mark.parametrize("rule", SEARCHED, ids=lambda r: r.name)
def test_each_field_refuses_what_the_schedule_refuses_naming_the_field(rule):
    bad = _bad_value(rule)
    with pytest.raises(ValueError, match=f"schedule.{rule.name}"):
        Schedule(**{"policy": "deterministic", rule.name: bad})
    for form in (bad, {"choices": [rule.default, bad]}):
        with pytest.raises(ConfigError, match=f"field 'space.{rule.name}'") as info:
            parse_spec(_spec({rule.name: form}))
        assert "\n" not in str(info.value)


@pytest.mark.parametrize("rule", [r for r in SEARCHED if r.bounds], ids=lambda r: r.name)
def test_a_range_must_lie_within_the_fields_bounds(rule):
    low, high = rule.bounds
    assert parse_spec(_spec({rule.name: {"low": low, "high": high}}))
    with pytest.raises(ConfigError, match=rf"space.{rule.name}'.*\[{low:g}, {high:g}\]"):
        parse_spec(_spec({rule.name: {"low": low, "high": high + 1}}))


@pytest.mark.parametrize("rule", [r for r in SEARCHED if r.choices], ids=lambda r: r.name)
def test_a_field_with_choices_takes_no_range(rule):
    with pytest.raises(ConfigError, match="not a range"):
        parse_spec(_spec({rule.name: {"low": 0, "high": 1}}))


def test_the_baseline_policy_is_not_searched():
    with pytest.raises(ConfigError, match="'none' is the baseline"):
        parse_spec(_spec({"policy": {"choices": ["none", "stochastic"]}}))


def test_a_window_that_cannot_open_is_refused_in_one_line():
    with pytest.raises(ConfigError, match="start .* must be below end") as info:
        parse_spec(_spec({"start": {"low": 0.6, "high": 0.9}, "end": 0.5}))
    assert "\n" not in str(info.value)
    assert parse_spec(_spec({"start": {"low": 0.2, "high": 0.9}, "end": 0.5}))


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"sampler": {"seed": -1}}, "sampler.seed"),  # found by test_fuzz_specs: a traceback
        ({"sampler": {"seed": 2**32}}, "sampler.seed"),
    ],
)
def test_seeds_out_of_a_generators_range_are_one_line_errors(change, field):
    with pytest.raises(ConfigError, match=f"field '{field}'") as info:
        parse_spec({**_spec({}), **change})
    assert "\n" not in str(info.value)
