"""The table's statistics on known numbers: the paired t-interval against scipy's and by
hand, Welch's, zero-width intervals, seeds without a partner, every verdict, and the towers'
permutation test."""
import math

import pytest
from scipy import stats as scipy_stats

from alexnet_lit.analysis import stats
from alexnet_lit.analysis.stats import Delta, Stat, paired, verdict, welch

X = {0: 10.0, 1: 12.0, 2: 15.0}
Y = {0: 9.0, 1: 10.0, 2: 12.0}


def test_the_paired_interval_is_scipys_and_the_hand_computed_one():
    """Differences 1, 2, 3: mean 2, sd 1, t(0.975, 2) = 4.303 from the tables: 2 ± 2.484."""
    result = paired(X, Y)
    expected = scipy_stats.ttest_rel(list(X.values()), list(Y.values())).confidence_interval(0.95)
    assert result.delta.value == pytest.approx(2.0)
    assert (result.delta.low, result.delta.high) == pytest.approx((expected.low, expected.high), abs=1e-12)
    assert (result.delta.low, result.delta.high) == pytest.approx((2 - 4.303 / math.sqrt(3), 2 + 4.303 / math.sqrt(3)),
                                                                  abs=1e-3)
    assert result.differences == {0: 1.0, 1: 2.0, 2: 3.0} and result.seeds == [0, 1, 2] and result.left_out == 0
    assert not result.delta.resolved  # [-0.5, +4.5]


def test_the_level_of_both_intervals_is_scipys_at_that_level():
    x, y = Stat.of(list(X.values())), Stat.of(list(Y.values()))
    for confidence in (0.9, 0.975):
        p, w = paired(X, Y, confidence).delta, welch(x, y, confidence)
        expected_p = scipy_stats.ttest_rel(list(X.values()), list(Y.values())).confidence_interval(confidence)
        expected_w = scipy_stats.ttest_ind(list(X.values()), list(Y.values()),
                                           equal_var=False).confidence_interval(confidence)
        assert (p.low, p.high) == pytest.approx((expected_p.low, expected_p.high), abs=1e-12)
        assert (w.low, w.high) == pytest.approx((expected_w.low, expected_w.high), abs=1e-12)
    assert paired(X, Y, 0.975).delta.width > paired(X, Y).delta.width > paired(X, Y, 0.9).delta.width


def test_welch_is_scipys_and_wider_than_paired_on_these_numbers():
    x, y = Stat.of(list(X.values())), Stat.of(list(Y.values()))
    delta = welch(x, y)
    expected = scipy_stats.ttest_ind(list(X.values()), list(Y.values()), equal_var=False).confidence_interval(0.95)
    assert (delta.low, delta.high) == pytest.approx((expected.low, expected.high), abs=1e-12)
    # variances 6.33 and 2.33: standard error sqrt(6.33/3 + 2.33/3) = 1.70 on 3.3 degrees of
    # freedom, against 1/sqrt(3) = 0.58 on 2 for the differences: pairing halves the interval
    assert delta.width / paired(X, Y).delta.width == pytest.approx(2.070, abs=1e-3)


def test_welch_interval_on_unequal_spreads():
    """Variances 4 and 1/3 over 3 runs each: Welch-Satterthwaite's degrees of freedom are
    (4/3 + 1/9)^2 / ((4/3)^2/2 + (1/9)^2/2) = 2.33 (worked by hand), so the half-width lies
    between t(0.975, 3) = 3.182 and t(0.975, 2) = 4.303 standard errors (the tables)."""
    a, b = Stat.of([10.0, 12.0, 14.0]), Stat.of([10.0, 10.0, 11.0])
    delta = welch(a, b)
    se = math.sqrt(4 / 3 + 1 / 9)
    assert delta.value == pytest.approx(12 - 31 / 3)
    assert 3.182 * se < delta.width / 2 < 4.303 * se
    assert not delta.resolved  # +1.7 points, but the interval holds 0
    one = Stat.of([10.0])  # one run: no interval at all
    assert welch(one, b) == Delta(one.mean - b.mean) and not welch(one, b).resolved


def test_seeds_on_one_side_only_are_left_out_and_counted():
    result = paired({**X, 3: 20.0, 4: 21.0}, {**Y, 7: 1.0})
    assert result.seeds == [0, 1, 2] and result.left_out == 3
    assert result.delta == paired(X, Y).delta
    assert paired({0: 1.0}, {1: 1.0}) == stats.Paired(None, {}, 2)  # no common seed: no difference at all


def test_one_pair_gives_a_difference_without_an_interval_and_no_verdict():
    result = paired({0: 12.0, 1: 13.0}, {1: 10.0})
    assert result.delta == Delta(3.0) and result.left_out == 1
    assert verdict(result.delta, +1, bound=2) == "not resolved"
    assert verdict(None, +1, bound=2) == "not resolved"


def test_a_zero_width_interval_is_resolved_unless_it_sits_at_zero():
    """Equal differences have sd 0: the interval is the difference itself. 100 * (0.1 + 0.2)
    minus 30 is 3.6e-15 in floats, which is 0, not an effect."""
    five = paired({0: 45.0, 1: 47.0}, {0: 40.0, 1: 42.0}).delta
    assert five == Delta(5.0, 5.0, 5.0) and five.resolved and five.width == 0
    noise = paired({0: 100 * (0.1 + 0.2), 1: 100 * (0.1 + 0.2)}, {0: 30.0, 1: 30.0}).delta
    assert 0 < noise.low == noise.high < 1e-14
    assert not noise.resolved and noise.within(0.0)
    assert verdict(noise, +1, bound=2) == "no effect beyond ±2"
    assert welch(Stat.of([45.0, 45.0]), Stat.of([40.0, 40.0])) == Delta(5.0, 5.0, 5.0)


@pytest.mark.parametrize("delta, sign, bound, expected", [
    (Delta(2.0, 1.0, 3.0), +1, 2, "agrees"),
    (Delta(2.0, 1.0, 3.0), -1, 2, "disagrees"),
    (Delta(-2.0, -3.0, -1.0), -1, 2, "agrees"),
    (Delta(0.5, 0.2, 0.8), -1, 2, "disagrees"),  # excludes 0 and inside ±2: an effect, small
    (Delta(0.0, -1.9, 1.9), +1, 2, "no effect beyond ±2"),
    (Delta(0.0, -2.0, 2.0), +1, 2, "no effect beyond ±2"),  # the bound itself is inside
    (Delta(0.0, -2.1, 1.0), +1, 2, "not resolved"),  # one end outside
    (Delta(0.0, -1.0, 2.1), +1, 2, "not resolved"),
    (Delta(0.0, -1.0, 2.1), +1, 2.5, "no effect beyond ±2.5"),
    (Delta(1.0, -3.0, 5.0), +1, 2, "not resolved"),
    (Delta(1.0), +1, 2, "not resolved"),
], ids=["agrees", "disagrees", "agrees-negative", "small-effect", "equivalent", "at-the-bound",
        "below-bound", "above-bound", "wider-bound", "wide", "no-interval"])
def test_each_verdict(delta, sign, bound, expected):
    assert verdict(delta, sign, bound) == expected


def test_the_equivalence_verdict_on_paired_runs_on_both_sides_of_the_bound():
    """Differences +0.5, -0.5, 0: mean 0, sd 0.5, half-width 4.303 x 0.5 / sqrt(3) = 1.242."""
    delta = paired({0: 40.5, 1: 41.5, 2: 41.0}, {0: 40.0, 1: 42.0, 2: 41.0}).delta
    assert (delta.low, delta.high) == pytest.approx((-1.242, 1.242), abs=1e-3)
    assert verdict(delta, +1, bound=1.25) == "no effect beyond ±1.25"
    assert verdict(delta, +1, bound=1.24) == "not resolved"


def test_the_split_p_value_of_two_separated_groups_and_of_an_even_split():
    """Four 0s and four 1s: 2 of the C(8, 4) = 70 splits put the groups a full 1 apart."""
    assert stats.split_p_value([0, 0, 0, 0, 1, 1, 1, 1], 4) == pytest.approx(2 / 70, abs=0.006)
    assert stats.split_p_value([0, 1, 0, 1, 1, 0, 1, 0], 4) == 1.0
