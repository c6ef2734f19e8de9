from __future__ import annotations

import json

import pytest
import yaml

from objectives import Schedule


def _pattern(schedule: Schedule, total: int) -> list[bool]:
    return [schedule.is_reduced(step, total) for step in range(total)]


def test_none_never_reduces():
    assert not any(_pattern(Schedule("none", 1.0, 2.0), 100))


def test_stochastic_is_seeded_and_near_its_frequency():
    a = _pattern(Schedule("stochastic", 0.3, 2.0, seed=1), 2000)
    assert a == _pattern(Schedule("stochastic", 0.3, 2.0, seed=1), 2000)
    assert a != _pattern(Schedule("stochastic", 0.3, 2.0, seed=2), 2000)
    assert 0.25 < sum(a) / len(a) < 0.35


@pytest.mark.parametrize("k", [2, 3, 4, 7])
def test_deterministic_one_in_k_reduces_every_kth_step(k):
    pattern = _pattern(Schedule("deterministic", 1 / k, 2.0), 10 * k)
    assert [i for i, r in enumerate(pattern) if r] == list(range(k - 1, 10 * k, k))


@pytest.mark.parametrize("frequency", [0.0, 0.1, 0.25, 0.4, 0.5, 2 / 3, 0.75, 0.9, 1.0])
def test_deterministic_counts_in_every_window_are_within_one(frequency):
    pattern = _pattern(Schedule("deterministic", frequency, 2.0), 200)
    for n in (1, 5, 10, 37, 200):
        for first in range(0, 200 - n + 1, 7):
            count = sum(pattern[first : first + n])
            assert abs(count - round(frequency * n)) <= 1, (n, first)


def test_window_limits_reduction():
    schedule = Schedule("deterministic", 1.0, 2.0, start=0.25, end=0.75)
    pattern = _pattern(schedule, 100)
    assert pattern == [25 <= i < 75 for i in range(100)]


def test_progressive_holds_then_rises_to_full():
    schedule = Schedule("progressive", 0.625, 2.0, end=0.8)
    scales = [schedule.scale_at(step, 100) for step in range(100)]
    assert scales[:50] == [2.0] * 50
    assert all(a >= b for a, b in zip(scales[50:80], scales[51:80]))
    assert 1.0 < scales[60] < 2.0
    assert scales[80:] == [1.0] * 20


def test_round_trip_through_json_and_yaml():
    schedule = Schedule("stochastic", 0.3, 1.5, kernel_pool=False, bn="update", end=0.8, seed=4)
    assert Schedule.from_dict(json.loads(json.dumps(schedule.to_dict()))) == schedule
    assert Schedule.from_dict(yaml.safe_load(yaml.safe_dump(schedule.to_dict()))) == schedule


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"frequency": 1.5}, "schedule.frequency"),
        ({"frequency": -0.1}, "schedule.frequency"),
        ({"scale": 0.5}, "schedule.scale"),
        ({"scale": 5.0}, "schedule.scale"),
        ({"policy": "sometimes"}, "schedule.policy"),
        ({"start": 0.5, "end": 0.5}, "schedule.start"),
        ({"bn": "separate"}, "schedule.bn"),
        ({"lr_scale": 8.0}, "schedule.lr_scale"),
    ],
)
def test_invalid_values_name_the_field(kwargs, field):
    args = {"policy": "deterministic", **kwargs}
    with pytest.raises(ValueError, match=field) as info:
        Schedule(**args)
    assert "\n" not in str(info.value)


def test_unknown_field_is_refused():
    with pytest.raises(ValueError, match="unknown schedule field"):
        Schedule.from_dict({"policy": "none", "speed": 3})


# --- exact patterns: the values each rule computes, not only their shape -----------------------


def _scales(schedule: Schedule, total: int) -> list[float]:
    return [schedule.scale_at(step, total) for step in range(total)]


def test_deterministic_counts_its_pattern_from_the_window_start() -> None:
    # The window opens at step 1: every other step of the window, counted from there.
    schedule = Schedule("deterministic", frequency=0.5, scale=2.0, start=0.125, end=1.0)
    assert [s > 1 for s in _scales(schedule, 8)] == [
        False, False, True, False, True, False, True, False
    ]  # fmt: skip


def test_window_start_rounds_up_to_the_next_whole_step() -> None:
    schedule = Schedule("deterministic", frequency=1.0, scale=2.0, start=0.25, end=0.75)
    # 0.25 x 10 = 2.5 -> the window is steps 3..7 (end 7.5 -> 8, exclusive).
    assert _scales(schedule, 10) == [1, 1, 1, 2, 2, 2, 2, 2, 1, 1]


def test_progressive_holds_then_falls_linearly_to_full_resolution() -> None:
    schedule = Schedule("progressive", frequency=0.5, scale=2.0)
    assert _scales(schedule, 10) == pytest.approx([2, 2, 2, 2, 2, 2, 1.8, 1.6, 1.4, 1.2])


def test_stochastic_reduces_only_inside_its_window_at_its_frequency() -> None:
    schedule = Schedule("stochastic", frequency=0.3, scale=2.0, start=0.5, end=1.0, seed=7)
    pattern = _scales(schedule, 4000)
    assert all(s == 1.0 for s in pattern[:2000])
    share = sum(s > 1 for s in pattern[2000:]) / 2000
    assert 0.26 < share < 0.34
    assert pattern == _scales(schedule, 4000)  # a pure function of (seed, step)
    other = Schedule("stochastic", frequency=0.3, scale=2.0, start=0.5, end=1.0, seed=8)
    assert _scales(other, 4000) != pattern


@pytest.mark.parametrize("policy", ["stochastic", "deterministic", "progressive"])
def test_scale_one_reduces_nothing(policy: str) -> None:
    assert set(_scales(Schedule(policy, frequency=0.9, scale=1.0), 50)) == {1.0}


# --- bounds, types and edge cases (mutation testing's findings) --------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"frequency": 0.0}, {"frequency": 1.0}, {"scale": 1.0}, {"scale": 4.0},
        {"start": 0.0, "end": 1.0}, {"start": 0.99, "end": 1.0}, {"lr_scale": 0.25},
        {"lr_scale": 4.0}, {"lr_scale": 4}, {"frequency": 1}, {"seed": -3},
    ],
)  # fmt: skip
def test_values_on_the_bounds_are_accepted(kwargs) -> None:
    schedule = Schedule("deterministic", **kwargs)
    assert all(getattr(schedule, key) == value for key, value in kwargs.items())


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"frequency": True}, "schedule.frequency"),
        ({"frequency": "0.5"}, "schedule.frequency"),
        ({"start": -0.01}, "schedule.start"),
        ({"end": 1.01}, "schedule.end"),
        ({"scale": 4.01}, "schedule.scale"),
        ({"scale": True}, "schedule.scale"),
        ({"scale": "2"}, "schedule.scale"),
        ({"start": 0.6, "end": 0.5}, "schedule.start"),
        ({"kernel_pool": 1}, "schedule.kernel_pool"),
        ({"lr_scale": 0.24}, "schedule.lr_scale"),
        ({"lr_scale": 4.01}, "schedule.lr_scale"),
        ({"lr_scale": True}, "schedule.lr_scale"),
        ({"lr_scale": "1"}, "schedule.lr_scale"),
        ({"seed": True}, "schedule.seed"),
        ({"seed": 1.5}, "schedule.seed"),
        ({"bn": "Freeze"}, "schedule.bn"),
        ({"policy": "None"}, "schedule.policy"),
    ],
)
def test_out_of_bounds_and_wrong_types_are_refused(kwargs, field):
    with pytest.raises(ValueError) as info:
        Schedule(**{"policy": "deterministic", **kwargs})
    message = str(info.value)
    assert message.startswith(f"{field} ") and "\n" not in message
    assert repr(kwargs[field.removeprefix("schedule.")]) in message


def test_every_mode_name_is_accepted() -> None:
    for policy in ("none", "stochastic", "deterministic", "progressive"):
        for bn in ("freeze", "update"):
            assert Schedule(policy, bn=bn).bn == bn


def test_from_dict_wants_a_mapping() -> None:
    with pytest.raises(ValueError, match="a schedule must be a mapping, got list"):
        Schedule.from_dict([("policy", "none")])
    assert Schedule.from_dict({"policy": "none"}) == Schedule()


def test_the_stochastic_pattern_of_a_seed_is_pinned() -> None:
    # Stored trials name their seed: the pattern a seed gives must never change between versions.
    # Each step's draw depends on its absolute step number, not its place in the window.
    schedule = Schedule("stochastic", frequency=0.5, scale=2.0, start=0.25, seed=3)
    pattern = [int(s > 1) for s in _scales(schedule, 16)]
    assert pattern == [0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 1, 0, 1, 1, 1]


def test_progressive_with_a_ramp_shorter_than_two_steps() -> None:
    # Held for 8.5 of 10 steps: the last step is a third of the way down the 1.5-step ramp.
    schedule = Schedule("progressive", frequency=0.85, scale=2.0)
    assert _scales(schedule, 10) == pytest.approx([2.0] * 9 + [2 - 1 / 3])
    assert _scales(Schedule("progressive", frequency=0.95, scale=2.0), 10) == [2.0] * 10


def test_a_ramp_within_a_millionth_of_full_resolution_is_a_full_step() -> None:
    assert _scales(Schedule("progressive", frequency=0.0, scale=1.0000005), 4) == [1.0] * 4
    assert _scales(Schedule("progressive", frequency=0.0, scale=1.00001), 2)[0] == 1.00001


def test_unknown_fields_are_listed_with_the_allowed_ones() -> None:
    with pytest.raises(ValueError) as info:
        Schedule.from_dict({"policy": "none", "speed": 3, "volume": 1})
    assert str(info.value).startswith(
        "unknown schedule field(s) speed, volume; allowed: bn, end, frequency, kernel_pool, "
    )


def test_window_offsets_count_from_the_window_start_for_any_period() -> None:
    # Every third step of a window opening at step 1: steps 3, 6, 9 (counted from step 0 it
    # would be 2, 5, 8; from step 2, 1, 4, 7).
    deterministic = Schedule("deterministic", frequency=1 / 3, scale=2.0, start=0.1)
    assert [s > 1 for s in _scales(deterministic, 10)] == [
        False, False, False, True, False, False, True, False, False, True
    ]  # fmt: skip
    # Progressive over the second half: held for 2.5 of its 5 steps, then down to 1.
    progressive = Schedule("progressive", frequency=0.5, scale=2.0, start=0.5)
    assert _scales(progressive, 10) == pytest.approx([1] * 5 + [2, 2, 2, 1.8, 1.4])
