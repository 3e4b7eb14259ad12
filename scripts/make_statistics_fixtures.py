"""Writes the SciPy golden values the comparison statistics are tested against.

Run from the repository root with a Python that has SciPy and NumPy (the peer venv of
scripts/setup-python has both):
    python scripts/make_statistics_fixtures.py
It writes Tests/EpicycleExperimentsTests/Fixtures/statistics.json:
  t_cdf          scipy.stats.t.cdf(t, df) over df 1 … 1000 (whole and fractional) and t −40 … 40
  t_ppf          scipy.stats.t.ppf(p, df) over the same df and p 1e-9 … 1 − 1e-9
  paired         scipy.stats.ttest_rel(first, second): t, df, p and the 95 % confidence interval
  welch          scipy.stats.ttest_ind(first, second, equal_var=False): the same
  power          P(|T'| > t.ppf(0.975, df)) for T' ~ scipy.stats.nct(df, noncentrality)
  paired_seeds   the smallest n ≥ 2 with paired-test power ≥ 0.8 for an observed mean difference and
                 standard deviation of the differences (n − 1 df, noncentrality mean / sd · √n); null
                 when more than 1000 seeds would be needed
  welch_seeds    the same for Welch's test with n seeds per side, modelled as noncentral t with the
                 Welch–Satterthwaite df; each case also holds the power of the real Welch test at that
                 n from a seeded Monte-Carlo simulation, to check the approximation itself
"""
import json
import pathlib

import numpy as np
import scipy
from scipy import stats

FIXTURE = pathlib.Path(__file__).parent.parent / "Tests" / "EpicycleExperimentsTests" / "Fixtures" / "statistics.json"
DEGREES = [1, 1.5, 2, 2.7, 3, 4, 5, 9.3, 10, 30, 57.25, 100, 317.4, 999, 1000]
ALPHA, POWER = 0.05, 0.8


def two_sided_power(df, noncentrality):
    # The lower tail P(T' < −c; λ) as P(T' > c; −λ): SciPy 1.17's nct.cdf returns NaN there for λ ≳ 11.
    critical = stats.t.ppf(1 - ALPHA / 2, df)
    return float(stats.nct.sf(critical, df, noncentrality) + stats.nct.sf(critical, df, -noncentrality))


def welch_model(n, var1, var2, difference):
    """Welch–Satterthwaite df and noncentrality for n seeds per side."""
    total = var1 + var2
    return total * total * (n - 1) / (var1 * var1 + var2 * var2), difference / np.sqrt(total / n)


def smallest(power_of_n):
    """The smallest n in 2 … 1000 reaching the power goal, or None beyond 1000."""
    return next((n for n in range(2, 1001) if power_of_n(n) >= POWER), None)


def test_record(result, first, second):
    interval = result.confidence_interval(0.95)
    return {"first": first, "second": second, "t": float(result.statistic), "df": float(result.df),
            "p": float(result.pvalue), "ci_low": float(interval.low), "ci_high": float(interval.high)}


def main():
    t_values = [-40, -6, -2.5, -1, -0.1, 0, 0.3, 1.7, 3, 8, 25, 40]
    probabilities = [1e-9, 1e-6, 0.001, 0.025, 0.1, 0.4, 0.5, 0.8, 0.975, 0.995, 0.999999, 1 - 1e-9]
    t_cdf = [{"t": t, "df": df, "cdf": float(stats.t.cdf(t, df))} for df in DEGREES for t in t_values]
    t_ppf = [{"p": p, "df": df, "quantile": float(stats.t.ppf(p, df))} for df in DEGREES for p in probabilities]

    # Top-1 (%) of a variant and its baseline per seed, in the shapes comparisons produce.
    pairs = [
        ([91.2, 91.5, 90.9], [90.7, 90.8, 91.0]),
        ([83.77, 84.1, 83.42], [83.17, 83.9, 82.44]),
        ([78.3, 78.95, 78.1, 77.9, 78.6], [77.4, 78.1, 76.8, 77.5, 77.3]),
        ([72.5, 72.8], [77.1, 77.6]),
        ([90.58, 90.2, 90.96, 90.55, 90.61, 90.3, 90.9, 90.41], [90.73, 90.5, 91.0, 90.45, 90.8, 90.6, 90.95, 90.7]),
    ]
    paired = [test_record(stats.ttest_rel(a, b), a, b) for a, b in pairs]
    samples = pairs[:3] + [([91.2, 91.5, 90.9], [90.7, 90.8, 91.0, 90.4]), ([80, 81], [79, 79.5, 80.5]),
                           ([88.1, 87.3, 88.9, 87.7, 88.4, 88.0], [86.9, 88.2, 87.0])]
    welch = [test_record(stats.ttest_ind(a, b, equal_var=False), a, b) for a, b in samples]

    power = [{"df": df, "noncentrality": nc, "power": two_sided_power(df, nc)}
             for df, nc in [(1, 3), (2, 2.5), (4, 1), (4.6, 3.2), (9, 2.8), (11.37, 0.4), (29, 2.9), (200, 2.8),
                            (999, 2.5), (999, 0.2), (2, 11.547005383792515)]]

    paired_seeds = []
    for mean, sd in [(0.36667, 0.45092), (1.03, 0.62), (0.05, 1.23), (-4.82, 0.55), (0.6, 0.9), (0.02, 0.9),
                     (2.0, 0.3)]:
        n = smallest(lambda n: two_sided_power(n - 1, mean / sd * np.sqrt(n)))
        paired_seeds.append({"mean": mean, "sd": sd, "seeds": n,
                             "power_at_seeds": two_sided_power(n - 1, mean / sd * np.sqrt(n)) if n else None})

    generator = np.random.default_rng(20260512)
    welch_seeds = []
    for difference, var1, var2 in [(0.6, 0.09, 0.5184), (1.03, 0.1849, 0.4761), (0.4, 0.2, 0.2), (-1.5, 1.0, 0.05)]:
        n = smallest(lambda n: two_sided_power(*welch_model(n, var1, var2, difference)))
        df, nc = welch_model(n, var1, var2, difference)
        simulations = 200_000
        first = generator.normal(difference, np.sqrt(var1), size=(simulations, n))
        second = generator.normal(0, np.sqrt(var2), size=(simulations, n))
        rejected = stats.ttest_ind(first, second, axis=1, equal_var=False).pvalue < ALPHA
        simulated = float(rejected.mean())
        welch_seeds.append({"difference": difference, "var1": var1, "var2": var2, "seeds": n, "df": float(df),
                            "power_at_seeds": two_sided_power(df, nc), "simulated_power": simulated,
                            "simulated_standard_error": float(np.sqrt(simulated * (1 - simulated) / simulations))})

    fixture = {"scipy_version": scipy.__version__, "alpha": ALPHA, "power_goal": POWER, "t_cdf": t_cdf, "t_ppf": t_ppf,
               "paired": paired, "welch": welch, "power": power, "paired_seeds": paired_seeds,
               "welch_seeds": welch_seeds}
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    FIXTURE.write_text(json.dumps(fixture, indent=1) + "\n")
    print(f"wrote {FIXTURE} (SciPy {scipy.__version__})")


if __name__ == "__main__":
    main()
