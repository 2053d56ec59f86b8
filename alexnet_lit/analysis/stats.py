"""The ablation table's statistics (no I/O): a sample's mean and sd, the difference of two
arms with a t-interval (95% unless told), paired over seeds (common random numbers, alexnet_lit.build) or
unpaired (Welch's), the verdict a paired interval gives against the paper's sign, the paired
t-test's p-values (of no change, and TOST's of a change beyond ±B) with Holm's step-down
procedure over a family of rows, and a permutation test of two groups of scores (Figure 3's
towers)."""
import math
import statistics
from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats

CONFIDENCE = 0.95  # the intervals' default level
TOLERANCE = 1e-9  # points: differences of floats that are equal in decimal come out ~1e-14 apart


@dataclass(frozen=True)
class Stat:
    """Mean and sample standard deviation of n values (sd None for one value)."""
    mean: float
    sd: float | None
    n: int

    @classmethod
    def of(cls, values: list[float]) -> "Stat | None":
        if not values:
            return None
        return cls(statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None, len(values))


@dataclass(frozen=True)
class Delta:
    """A difference (percentage points) with its t-interval; ``low`` and ``high`` are
    None where there is no interval (one value a side, or one pair)."""
    value: float
    low: float | None = None
    high: float | None = None

    @property
    def width(self) -> float | None:
        return None if self.low is None else self.high - self.low

    @property
    def resolved(self) -> bool:
        """The interval excludes 0 (by more than TOLERANCE, so that a zero-width interval at 0
        computed as 1e-15 is not)."""
        return self.low is not None and (self.low > TOLERANCE or self.high < -TOLERANCE)

    def within(self, bound: float) -> bool:
        """The whole interval lies inside ±bound."""
        return self.low is not None and self.low >= -bound - TOLERANCE and self.high <= bound + TOLERANCE


def t_interval(value: float, se: float, dof: float, confidence: float = CONFIDENCE) -> Delta:
    half = scipy_stats.t.ppf(0.5 + confidence / 2, dof) * se if se > 0 else 0.0
    return Delta(value, value - half, value + half)


def welch(x: Stat, y: Stat, confidence: float = CONFIDENCE) -> Delta:
    """x's mean minus y's with the Welch t-interval (unequal variances, Welch-Satterthwaite
    degrees of freedom); no interval without two values a side."""
    value = x.mean - y.mean
    if x.sd is None or y.sd is None:
        return Delta(value)
    a, b = x.sd ** 2 / x.n, y.sd ** 2 / y.n
    if a + b == 0:
        return Delta(value, value, value)
    dof = (a + b) ** 2 / (a ** 2 / (x.n - 1) + b ** 2 / (y.n - 1))
    return t_interval(value, math.sqrt(a + b), dof, confidence)


@dataclass(frozen=True)
class Paired:
    """x minus y over the seeds both have: ``delta`` (None without a common seed) with the
    paired t-interval, each seed's difference, and how many values had no partner."""
    delta: Delta | None
    differences: dict[int, float]
    left_out: int

    @property
    def seeds(self) -> list[int]:
        return list(self.differences)


def paired(x_by_seed: dict[int, float], y_by_seed: dict[int, float], confidence: float = CONFIDENCE) -> Paired:
    """The paired t-interval on the per-seed differences x[s] - y[s] (n - 1 degrees of
    freedom); a seed on one side only is left out and counted."""
    seeds = sorted(x_by_seed.keys() & y_by_seed.keys())
    differences = {s: x_by_seed[s] - y_by_seed[s] for s in seeds}
    left_out = len(x_by_seed.keys() ^ y_by_seed.keys())
    d = Stat.of(list(differences.values()))
    if d is None:
        return Paired(None, differences, left_out)
    if d.sd is None:
        return Paired(Delta(d.mean), differences, left_out)
    return Paired(t_interval(d.mean, d.sd / math.sqrt(d.n), d.n - 1, confidence), differences, left_out)


AGREES, DISAGREES, NOT_RESOLVED = "agrees", "disagrees", "not resolved"


def verdict(delta: Delta | None, sign: int, bound: float) -> str:
    """``agrees`` / ``disagrees`` where the interval excludes 0 (on the side of ``sign``, the
    paper's, or not), ``no effect beyond ±bound`` where it lies inside ±bound (an equivalence
    result), else ``not resolved`` (also without an interval)."""
    if delta is None or delta.low is None:
        return NOT_RESOLVED
    if delta.resolved:
        return AGREES if delta.value * sign > 0 else DISAGREES
    if delta.within(bound):
        return f"no effect beyond ±{bound:g}"
    return NOT_RESOLVED


def p_values(differences: list[float], bound: float) -> tuple[float, float] | None:
    """The paired t-tests on per-seed differences (n - 1 degrees of freedom): the two-sided
    p-value of no change, and TOST's p-value of a change beyond ±``bound`` (the larger of the
    one-sided p-values of H0 Δ <= -bound and of H0 Δ >= +bound; below α exactly where the
    1 - 2α interval lies inside ±bound). None with fewer than two differences. Differences
    all equal (sd 0) give 0 or 1, as their zero-width interval excludes 0 or lies inside ±bound."""
    d = Stat.of(differences)
    if d is None or d.sd is None:
        return None
    if d.sd == 0:
        return float(abs(d.mean) <= TOLERANCE), float(abs(d.mean) >= bound + TOLERANCE)
    se, dof = d.sd / math.sqrt(d.n), d.n - 1
    effect = 2 * scipy_stats.t.sf(abs(d.mean) / se, dof)
    tost = max(scipy_stats.t.sf((d.mean + bound) / se, dof), scipy_stats.t.sf((bound - d.mean) / se, dof))
    return float(effect), float(tost)


def holm(p: dict[str, float], alpha: float) -> dict[str, bool]:
    """Holm's step-down procedure at family-wise error ``alpha``: the k-th smallest of m
    p-values (k from 1) is rejected if it and every smaller one is at most alpha / (m - k + 1)."""
    rejected, going = {}, True
    for k, (name, value) in enumerate(sorted(p.items(), key=lambda kv: kv[1])):
        going = going and value <= alpha / (len(p) - k)
        rejected[name] = going
    return rejected


def family_verdicts(rows: dict[str, tuple[float, float, bool]], bound: float, alpha: float) -> dict[str, str]:
    """Each row's verdict under Holm at family-wise ``alpha``, applied to the rows' p-values of
    no change and, apart, to their TOST p-values (``rows``: name -> (p, TOST p, whether the
    change has the paper's sign)): a change rejected is *agrees* or *disagrees*; else TOST
    rejected, *no effect beyond ±bound*; else *not resolved*."""
    effect = holm({name: p for name, (p, _, _) in rows.items()}, alpha)
    equivalent = holm({name: tost for name, (_, tost, _) in rows.items()}, alpha)
    verdicts = {}
    for name, (_, _, as_paper) in rows.items():
        if effect[name]:
            verdicts[name] = AGREES if as_paper else DISAGREES
        else:
            verdicts[name] = f"no effect beyond ±{bound:g}" if equivalent[name] else NOT_RESOLVED
    return verdicts


def split_gaps(scores: list[float], first: int, draws: int = 10_000, seed: int = 0) -> np.ndarray:
    """The gap between the groups' means of ``draws`` random splits of ``scores`` into
    groups of ``first`` and the rest: the permutation distribution."""
    values = np.asarray(scores, dtype=float)
    shuffled = np.random.default_rng(seed).permuted(np.broadcast_to(values, (draws, len(values))), axis=1)
    return np.abs(shuffled[:, :first].mean(1) - shuffled[:, first:].mean(1))


def split_p_value(scores: list[float], first: int, draws: int = 10_000, seed: int = 0) -> float:
    """How often a random split of ``scores`` into groups of ``first`` and the rest gives as
    large a gap between the groups' means as the split given (the first ``first`` scores):
    a permutation p-value, (1 + as large) / (1 + draws)."""
    values = np.asarray(scores, dtype=float)
    observed = abs(values[:first].mean() - values[first:].mean())
    gaps = split_gaps(scores, first, draws, seed)
    return float((1 + (gaps >= observed - TOLERANCE).sum()) / (1 + draws))


def detectable_gap(scores: list[float], first: int, alpha: float = 0.05, draws: int = 10_000, seed: int = 0) -> float:
    """The smallest gap between the groups' means with split_p_value below ``alpha`` (the same
    random splits): what the test could detect in these scores, about the permutation
    distribution's 1 - alpha quantile; inf where no gap is."""
    gaps = np.sort(split_gaps(scores, first, draws, seed))
    p = (1 + len(gaps) - np.searchsorted(gaps, gaps - TOLERANCE, side="left")) / (1 + draws)
    detected = gaps[p < alpha]
    return float(detected.min()) if detected.size else math.inf
