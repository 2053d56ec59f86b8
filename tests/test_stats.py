"""The table's statistics on known numbers: the paired t-interval against scipy's and by
hand, Welch's, zero-width intervals, seeds without a partner, every verdict, the p-values and
Holm's procedure (by hand, against scipy and statsmodels), and the towers' permutation test."""
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


def test_holm_on_a_hand_computed_family():
    """Four p-values at family-wise 0.05: sorted 0.01 <= 0.05/4, 0.015 <= 0.05/3, 0.03 > 0.05/2
    stops the procedure, so 0.04 (<= 0.05/1 on its own) is not rejected either."""
    p = {"a": 0.03, "b": 0.01, "c": 0.04, "d": 0.015}
    assert stats.holm(p, 0.05) == {"b": True, "d": True, "a": False, "c": False}
    assert stats.holm({"a": 0.0125, "b": 0.5}, 0.05) == {"a": True, "b": False}  # 0.0125 <= 0.05/2: the bound itself
    assert stats.holm({}, 0.05) == {}


def test_holm_is_statsmodels_multipletests():
    multipletests = pytest.importorskip("statsmodels.stats.multitest").multipletests
    p = [0.0087, 7.9e-5, 0.22, 1e-5, 0.33, 0.0011, 0.049, 0.012, 0.006, 0.3, 3e-6, 0.0042, 0.58, 0.02]
    for alpha in (0.05, 0.1, 0.01):
        expected, *_ = multipletests(p, alpha=alpha, method="holm")
        ours = stats.holm({str(i): value for i, value in enumerate(p)}, alpha)
        assert [ours[str(i)] for i in range(len(p))] == list(expected)


def test_the_p_values_are_scipys_two_sided_and_one_sided_paired_t_tests():
    """TOST's p-value is the larger of the one-sided tests of the differences against -B
    (alternative: greater) and +B (alternative: less), 4 degrees of freedom here."""
    differences = [0.4, -0.3, 1.1, 0.2, 0.6]
    p, tost = stats.p_values(differences, bound=2)
    assert p == pytest.approx(scipy_stats.ttest_1samp(differences, 0).pvalue, rel=1e-12)
    lower = scipy_stats.ttest_1samp(differences, -2, alternative="greater").pvalue
    upper = scipy_stats.ttest_1samp(differences, 2, alternative="less").pvalue
    assert tost == pytest.approx(max(lower, upper), rel=1e-12) and upper > lower
    # TOST below α exactly where the 1 - 2α interval lies inside ±B
    for alpha in (0.01, 0.025, 0.05):
        delta = paired(dict(enumerate(differences)), dict.fromkeys(range(5), 0.0), 1 - 2 * alpha).delta
        bound = max(-delta.low, delta.high)
        assert stats.p_values(differences, bound * 1.001)[1] < alpha < stats.p_values(differences, bound * 0.999)[1]
    assert stats.p_values([1.0], bound=2) is None  # one pair: no test
    assert stats.p_values([1.0, 1.0], bound=2) == (0.0, 0.0)  # sd 0: the zero-width interval's verdicts
    assert stats.p_values([3.0, 3.0], bound=2) == (0.0, 1.0)


def test_family_verdicts_by_the_papers_sign_then_tost():
    """Three rows at family-wise 0.05: 'a' rejected for a change (0.001 <= 0.05/3) against the
    paper's sign; 'b' not (0.03 > 0.05/2), but for TOST (0.02 <= 0.05/2, after 'c''s 0.001 <=
    0.05/3); 'c' only for TOST."""
    rows = {"a": (0.001, 0.9, False), "b": (0.03, 0.02, True), "c": (0.5, 0.001, True)}
    assert stats.family_verdicts(rows, 2, 0.05) == {"a": "disagrees", "b": "no effect beyond ±2",
                                                    "c": "no effect beyond ±2"}
    rows["b"] = (0.03, 0.04, True)  # 0.04 > 0.05/2: neither
    assert stats.family_verdicts(rows, 2, 0.05)["b"] == "not resolved"
    assert stats.family_verdicts({"a": (0.001, 0.9, True)}, 1.5, 0.05) == {"a": "agrees"}


def test_the_detectable_gap_of_two_separated_groups():
    """Four 0s and four 1s split 4/4: gaps 1 (2 of 70 splits, p about 0.029), 0.5 (32 of 70) or 0:
    only a full 1 is detectable at 0.05; nothing at 0.01."""
    scores = [0, 0, 0, 0, 1, 1, 1, 1]
    assert stats.detectable_gap(scores, 4) == 1.0
    assert stats.split_p_value(scores, 4) < 0.05 < stats.split_p_value([0, 0, 0, 1, 0, 1, 1, 1], 4)
    assert stats.detectable_gap(scores, 4, alpha=0.01) == math.inf
