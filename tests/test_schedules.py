import json

import keras
import pytest

from keras_anneal import schedules

ALL_SCHEDULES = [
    schedules.FSA(final_sparsity=0.9, mu=20.0, begin_step=10, end_step=210),
    schedules.FSA(final_sparsity=0.8, end_fraction=0.25),
    schedules.PolynomialDecay(final_sparsity=0.7, initial_sparsity=0.1, end_step=100, power=2),
    schedules.ConstantSparsity(target_sparsity=0.6, begin_step=5),
    schedules.ConstantRate(rate=0.01, interval=20, relative_to="remaining", final_sparsity=0.5),
]


def fsa_kept(M, k, e, N, mu):
    """Barbu et al.'s eq. 3, written out independently of the class."""
    return k + (M - k) * max(0.0, (N - 2 * e) / (2 * e * mu + N))


@pytest.mark.parametrize("mu", [0.0, 10.0, 100.0, 300.0])
def test_fsa_matches_the_paper_at_fixed_points(mu):
    end_step, final = 1000, 0.9
    N = 2 * end_step
    schedule = schedules.FSA(final_sparsity=final, mu=mu, end_step=end_step)
    M, k = 10_000, 1_000
    for e in (0, N // 4, N // 2, N, 5 * N):
        expected = 1 - fsa_kept(M, k, e, N, mu) / M
        assert schedule(e) == pytest.approx(expected, abs=1e-12)
    # By hand: nothing at e = 0, s_f (mu + 1) / (mu + 2) at N / 4, s_f from N / 2 on.
    assert schedule(0) == 0.0
    assert schedule(N // 4) == pytest.approx(final * (mu + 1) / (mu + 2))
    assert schedule(N // 2) == pytest.approx(final)
    assert schedule(3 * N) == pytest.approx(final)


def test_fsa_begin_step_shifts_the_plan():
    schedule = schedules.FSA(final_sparsity=0.5, mu=0.0, begin_step=100, end_step=300)
    assert schedule(50) == 0.0
    assert schedule(100) == 0.0
    assert schedule(200) == pytest.approx(0.25)
    assert schedule(300) == pytest.approx(0.5)


def test_end_fraction_uses_the_fit_total():
    by_fraction = schedules.FSA(final_sparsity=0.9, mu=5.0, end_fraction=0.5)
    by_step = schedules.FSA(final_sparsity=0.9, mu=5.0, end_step=1200)
    for step in (0, 100, 600, 1200, 2400):
        assert by_fraction(step, total_steps=2400) == by_step(step)


def test_end_defaults_to_half_of_training():
    schedule = schedules.FSA(final_sparsity=0.9)
    assert schedule.end_fraction == 0.5
    assert schedule(500, total_steps=1000) == pytest.approx(0.9)
    assert schedule(499, total_steps=1000) < 0.9


def test_end_fraction_without_total_steps_is_a_clear_error():
    with pytest.raises(ValueError, match="end_fraction.*total_steps=None"):
        schedules.FSA(final_sparsity=0.9, end_fraction=0.5)(10)


def test_end_fraction_ending_before_begin_step_is_an_error():
    schedule = schedules.FSA(final_sparsity=0.9, begin_step=100, end_fraction=0.1)
    with pytest.raises(ValueError, match="not after `begin_step=100`"):
        schedule(0, total_steps=500)


def test_constant_rate_both_readings_after_112_removals():
    step = 112 * 50
    assert schedules.ConstantRate()(step) == pytest.approx(0.56)
    remaining = schedules.ConstantRate(relative_to="remaining")(step)
    assert remaining == pytest.approx(1 - 0.995**112)
    assert remaining == pytest.approx(0.43, abs=0.005)
    # Removals happen only on whole intervals.
    assert schedules.ConstantRate()(49) == 0.0
    assert schedules.ConstantRate()(50) == pytest.approx(0.005)
    assert schedules.ConstantRate()(99) == pytest.approx(0.005)


def test_constant_rate_stops_at_final_sparsity():
    schedule = schedules.ConstantRate(rate=0.1, interval=1, final_sparsity=0.35)
    assert schedule(3) == pytest.approx(0.3)
    assert schedule(4) == 0.35
    assert schedule(10_000) == 0.35


def test_polynomial_decay_matches_zhu_and_gupta():
    schedule = schedules.PolynomialDecay(
        final_sparsity=0.8, initial_sparsity=0.2, begin_step=100, end_step=300
    )
    assert schedule(99) == 0.0
    assert schedule(100) == pytest.approx(0.2)
    assert schedule(200) == pytest.approx(0.8 + (0.2 - 0.8) * 0.5**3)
    assert schedule(300) == pytest.approx(0.8)
    assert schedule(1000) == pytest.approx(0.8)


def test_constant_sparsity():
    schedule = schedules.ConstantSparsity(target_sparsity=0.6, begin_step=5)
    assert [schedule(step) for step in (0, 4, 5, 10**6)] == [0.0, 0.0, 0.6, 0.6]
    assert schedule.final_sparsity == 0.6


@pytest.mark.parametrize("schedule", ALL_SCHEDULES, ids=lambda s: type(s).__name__)
def test_config_round_trips_through_json(schedule):
    config = json.loads(json.dumps(schedule.get_config()))
    restored = type(schedule).from_config(config)
    assert restored.get_config() == schedule.get_config()
    for step in (0, 7, 50, 120, 400, 5000):
        assert restored(step, total_steps=1000) == schedule(step, total_steps=1000)


@pytest.mark.parametrize("schedule", ALL_SCHEDULES, ids=lambda s: type(s).__name__)
def test_keras_serialization_round_trip(schedule):
    payload = json.dumps(keras.saving.serialize_keras_object(schedule))
    restored = keras.saving.deserialize_keras_object(json.loads(payload))
    assert type(restored) is type(schedule)
    assert restored.get_config() == schedule.get_config()


@pytest.mark.parametrize(
    "make, error, message",
    [
        (lambda: schedules.FSA(final_sparsity=1.0), ValueError, r"final_sparsity.*\[0, 1\).*final_sparsity=1.0"),
        (lambda: schedules.FSA(final_sparsity=-0.1), ValueError, "final_sparsity=-0.1"),
        (lambda: schedules.FSA(final_sparsity="0.9"), TypeError, "final_sparsity='0.9'"),
        (lambda: schedules.FSA(0.9, mu=-1), ValueError, "mu=-1"),
        (lambda: schedules.FSA(0.9, end_step=0), ValueError, "end_step=0"),
        (lambda: schedules.FSA(0.9, end_step=-5), ValueError, "end_step=-5"),
        (lambda: schedules.FSA(0.9, begin_step=-1), ValueError, "begin_step=-1"),
        (lambda: schedules.FSA(0.9, begin_step=100, end_step=50), ValueError, "end_step=50, begin_step=100"),
        (lambda: schedules.FSA(0.9, end_step=10, end_fraction=0.5), ValueError, "not both"),
        (lambda: schedules.FSA(0.9, end_fraction=0.0), ValueError, "end_fraction=0.0"),
        (lambda: schedules.FSA(0.9, end_fraction=1.5), ValueError, "end_fraction=1.5"),
        (lambda: schedules.FSA(0.9, end_step=10.5), TypeError, "end_step=10.5"),
        (lambda: schedules.PolynomialDecay(final_sparsity=0.9, initial_sparsity=1.2), ValueError, "initial_sparsity=1.2"),
        (lambda: schedules.PolynomialDecay(final_sparsity=0.5, initial_sparsity=0.6), ValueError, "initial_sparsity=0.6, final_sparsity=0.5"),
        (lambda: schedules.PolynomialDecay(0.0, 0.9), TypeError, "positional"),
        (lambda: schedules.PolynomialDecay(final_sparsity=0.9, power=0), ValueError, "power=0"),
        (lambda: schedules.ConstantSparsity(1.5), ValueError, "target_sparsity=1.5"),
        (lambda: schedules.ConstantRate(rate=0.0), ValueError, "rate=0.0"),
        (lambda: schedules.ConstantRate(rate=1.0), ValueError, "rate=1.0"),
        (lambda: schedules.ConstantRate(interval=0), ValueError, "interval=0"),
        (lambda: schedules.ConstantRate(relative_to="start"), ValueError, "relative_to='start'"),
        (lambda: schedules.ConstantRate(final_sparsity=1.0), ValueError, "final_sparsity=1.0"),
    ],
)
def test_bad_arguments_name_the_argument_and_value(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_get_rejects_non_schedules():
    with pytest.raises(TypeError, match="schedule='fsa'"):
        schedules.get("fsa")


def test_begin_fraction_starts_the_plan_at_a_fraction_of_training():
    schedule = schedules.FSA(final_sparsity=0.5, mu=0.0, begin_fraction=0.25, end_fraction=0.75)
    assert schedule(249, total_steps=1000) == 0.0
    assert schedule(250, total_steps=1000) == 0.0
    assert schedule(500, total_steps=1000) == pytest.approx(0.25)
    assert schedule(750, total_steps=1000) == pytest.approx(0.5)
    late = schedules.PolynomialDecay(final_sparsity=0.8, begin_fraction=0.5, end_step=300)
    assert late(99, total_steps=200) == 0.0  # Starts at step 100 of 200.
    assert late(200, total_steps=200) == pytest.approx(0.8 * (1 - 0.5 ** 3))
    assert late(300, total_steps=200) == pytest.approx(0.8)
    restored = schedules.FSA.from_config(schedule.get_config())
    assert restored.get_config() == schedule.get_config()
    assert restored(500, total_steps=1000) == pytest.approx(0.25)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: schedules.FSA(0.9, begin_step=10, begin_fraction=0.1), "begin_step=10, begin_fraction=0.1"),
        (lambda: schedules.FSA(0.9, begin_fraction=1.0), "begin_fraction"),
        (lambda: schedules.FSA(0.9, begin_fraction=0.6, end_fraction=0.5),
         "end_fraction=0.5, begin_fraction=0.6"),
    ],
)
def test_bad_begin_fraction_names_the_argument(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_begin_fraction_needs_the_total_and_must_start_before_end_step():
    schedule = schedules.FSA(final_sparsity=0.9, begin_fraction=0.5, end_step=100)
    with pytest.raises(ValueError, match="begin_fraction.*total_steps=None"):
        schedule(10)
    with pytest.raises(ValueError, match="not before `end_step=100`"):
        schedule(10, total_steps=1000)
