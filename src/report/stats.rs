//! Small statistics for reports: means, t intervals at any level, the paired t test, Holm's
//! step-down, Wilson intervals, alpha spending and the seeds a difference needs. Each is checked
//! in the tests against scipy / statsmodels on fixed inputs (their values are quoted there).

use statrs::distribution::{ContinuousCDF, Normal, StudentsT};

pub fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// Sample standard deviation (n − 1); `None` below two values.
pub fn sd(values: &[f64]) -> Option<f64> {
    if values.len() < 2 {
        return None;
    }
    let m = mean(values)?;
    Some((values.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (values.len() - 1) as f64).sqrt())
}

/// The 97.5% quantile of Student's t with `df` degrees of freedom (the half-width factor of a
/// two-sided 95% interval); NaN for 0.
pub(crate) fn t_975(df: usize) -> f64 {
    t_quantile(0.975, df)
}

/// The `p` quantile of Student's t with `df` degrees of freedom; NaN for 0.
pub(crate) fn t_quantile(p: f64, df: usize) -> f64 {
    match StudentsT::new(0.0, 1.0, df as f64) {
        Ok(t) if df > 0 => t.inverse_cdf(p),
        _ => f64::NAN,
    }
}

/// The paired t test of differences d_k (one per seed): mean, sample sd, and the two-sided
/// p-value of "mean 0". `None` below two values; the p-value is `None` when every difference is
/// the same (no spread: no test).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct PairedT {
    pub n: usize,
    pub mean: f64,
    pub sd: f64,
    pub p_value: Option<f64>,
}

impl PairedT {
    pub(crate) fn of(differences: &[f64]) -> Option<PairedT> {
        let n = differences.len();
        let (mean, sd) = (mean(differences)?, sd(differences)?);
        let p_value = (sd > 1e-12 * mean.abs().max(1e-12)).then(|| {
            let t = mean / (sd / (n as f64).sqrt());
            let dist = StudentsT::new(0.0, 1.0, (n - 1) as f64).expect("df ≥ 1");
            (2.0 * dist.cdf(-t.abs())).min(1.0)
        });
        Some(PairedT {
            n,
            mean,
            sd,
            p_value,
        })
    }

    /// The two-sided interval at confidence `level` (e.g. 0.95).
    pub(crate) fn interval(&self, level: f64) -> (f64, f64) {
        let half = t_quantile(0.5 + level / 2.0, self.n - 1) * self.sd / (self.n as f64).sqrt();
        (self.mean - half, self.mean + half)
    }
}

/// Holm's step-down at family-wise level `alpha`: for each p-value (in the given order)
/// whether it is rejected, and the level it was tested at — α/(m − i + 1) for the i-th
/// smallest while the procedure goes on; every p-value after the first that fails is
/// tested at that failing level. `None` p-values (no test possible) are never rejected and
/// count in m.
pub(crate) fn holm(p_values: &[Option<f64>], alpha: f64) -> Vec<(bool, f64)> {
    let m = p_values.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| {
        let key = |i: usize| p_values[i].unwrap_or(f64::INFINITY);
        key(a).total_cmp(&key(b))
    });
    let mut out = vec![(false, alpha); m];
    let mut stopped_at: Option<f64> = None;
    for (rank, &i) in order.iter().enumerate() {
        let level = stopped_at.unwrap_or(alpha / (m - rank) as f64);
        let rejected = stopped_at.is_none() && p_values[i].is_some_and(|p| p <= level);
        if !rejected && stopped_at.is_none() {
            stopped_at = Some(level);
        }
        out[i] = (rejected, level);
    }
    out
}

/// The two-sided standard normal quantile for confidence `level`.
pub(crate) fn z_two_sided(level: f64) -> f64 {
    Normal::new(0.0, 1.0)
        .expect("standard normal")
        .inverse_cdf(0.5 + level / 2.0)
}

/// Wilson's score interval for `k` successes of `n` at confidence `level` (`k` may be
/// fractional: ties count ½).
pub(crate) fn wilson(k: f64, n: usize, level: f64) -> Option<(f64, f64)> {
    if n == 0 {
        return None;
    }
    let n = n as f64;
    let z = z_two_sided(level);
    let p = k / n;
    let centre = p + z * z / (2.0 * n);
    let half = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt();
    let scale = 1.0 + z * z / n;
    Some((
        ((centre - half) / scale).max(0.0),
        ((centre + half) / scale).min(1.0),
    ))
}

/// Pearson's correlation of paired values; `None` below three pairs or without spread.
pub(crate) fn pearson(a: &[f64], b: &[f64]) -> Option<f64> {
    if a.len() != b.len() || a.len() < 3 {
        return None;
    }
    let (ma, mb) = (mean(a)?, mean(b)?);
    let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
    // A side that is the same on every seed (predicting nothing on fixed images) has no
    // correlation; rounding in its mean must not make one up.
    let spread = |v: f64, m: f64| v > 1e-20 * (1.0 + m * m) * a.len() as f64;
    (spread(va, ma) && spread(vb, mb)).then(|| cov / (va * vb).sqrt())
}

/// The share of differences above 0, ties counting ½, with its Wilson 95% interval.
pub(crate) fn probability_of_improvement(differences: &[f64]) -> Option<(f64, (f64, f64))> {
    let n = differences.len();
    let wins: f64 = differences
        .iter()
        .map(|&d| {
            if d > 0.0 {
                1.0
            } else if d == 0.0 {
                0.5
            } else {
                0.0
            }
        })
        .sum();
    Some((wins / n.max(1) as f64, wilson(wins, n, 0.95)?))
}

/// The share of α an alpha-spending function α·tᵖ has spent by information fraction `t`.
pub(crate) fn alpha_spent(alpha: f64, t: f64, rho: f64) -> f64 {
    alpha * t.clamp(0.0, 1.0).powf(rho)
}

/// The seeds a paired comparison needs to show a difference `delta` at two-sided level
/// `alpha` with the given power, at spread `sd`: the least n with
/// n ≥ ((t_{1−α/2, n−1} + t_{power, n−1}) · sd / δ)²; `None` above 1 000.
pub(crate) fn seeds_needed(sd: f64, delta: f64, alpha: f64, power: f64) -> Option<usize> {
    if delta.is_nan() || delta <= 0.0 || !sd.is_finite() {
        return None;
    }
    // t quantiles exceed the normal's, so the normal answer is a lower bound to search from.
    let normal = (z_two_sided(1.0 - alpha) + z_two_sided(2.0 * power - 1.0)) * sd / delta;
    let start = (normal * normal).floor().max(2.0);
    if start > 1000.0 {
        return None;
    }
    (start as usize..=1000).find(|&n| {
        let k = t_quantile(1.0 - alpha / 2.0, n - 1) + t_quantile(power, n - 1);
        n as f64 >= (k * sd / delta).powi(2)
    })
}

/// Mean with a 95% confidence interval (t distribution); the interval is `None` for one value.
pub(crate) fn mean_ci95(values: &[f64]) -> Option<(f64, Option<(f64, f64)>)> {
    let m = mean(values)?;
    let ci = sd(values).map(|s| {
        let half = t_975(values.len() - 1) * s / (values.len() as f64).sqrt();
        (m - half, m + half)
    });
    Some((m, ci))
}

/// "0.812 ± 0.013" (± sample sd), or just the mean for one value.
pub(crate) fn fmt_mean_sd(values: &[f64]) -> String {
    match (mean(values), sd(values)) {
        (None, _) => "–".into(),
        (Some(m), None) => format!("{m:.4}"),
        (Some(m), Some(s)) => format!("{m:.4} ± {s:.4}"),
    }
}

/// "+0.0123 [−0.0040, +0.0286]".
pub(crate) fn fmt_effect(difference: f64, ci: Option<(f64, f64)>) -> String {
    match ci {
        Some((lo, hi)) => format!("{difference:+.4} [{lo:+.4}, {hi:+.4}]"),
        None => format!("{difference:+.4}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn by_hand() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(mean(&v), Some(2.5));
        assert!((sd(&v).unwrap() - (5.0f64 / 3.0).sqrt()).abs() < 1e-12);
        let (m, ci) = mean_ci95(&v).unwrap();
        let half = 3.182_446 * (5.0f64 / 3.0).sqrt() / 2.0;
        let (lo, hi) = ci.unwrap();
        assert!(
            (m - 2.5).abs() < 1e-12
                && (lo - (2.5 - half)).abs() < 1e-5
                && (hi - (2.5 + half)).abs() < 1e-5
        );
        assert_eq!(mean_ci95(&[0.5]).unwrap(), (0.5, None));
        assert_eq!(fmt_mean_sd(&[]), "–");
    }

    #[test]
    fn t_quantiles_match_the_tables_at_every_df() {
        // Published two-sided 95% critical values (e.g. NIST/SEMATECH, to 3 decimals).
        for (df, want) in [
            (1, 12.706),
            (2, 4.303),
            (5, 2.571),
            (10, 2.228),
            (30, 2.042),
            (40, 2.021),
            (60, 2.000),
            (100, 1.984),
            (1000, 1.962),
        ] {
            let got = t_975(df);
            assert!((got - want).abs() < 1e-3, "df {df}: {got} vs {want}");
        }
        assert!(t_975(0).is_nan());
        // Above 30 degrees of freedom the quantile is still above the normal's 1.96.
        assert!(t_975(31) > 2.03 && t_975(31) < t_975(30));
    }

    /// Five seeds of two variants (fixed case used against scipy 1.16 / statsmodels 0.14).
    const A: [f64; 5] = [0.71, 0.64, 0.80, 0.69, 0.75];
    const B: [f64; 5] = [0.66, 0.65, 0.71, 0.62, 0.70];

    fn close(got: f64, want: f64, tol: f64) {
        assert!((got - want).abs() < tol, "{got} vs {want}");
    }

    #[test]
    fn paired_t_matches_scipy_ttest_rel() {
        let d: Vec<f64> = A.iter().zip(B).map(|(a, b)| a - b).collect();
        let t = PairedT::of(&d).unwrap();
        // scipy.stats.ttest_rel(A, B): statistic 2.98807152, pvalue 0.04041504;
        // .confidence_interval(0.95) = (0.00354119, 0.09645881), (0.99) = (−0.02704124, 0.12704124).
        close(t.mean / (t.sd / 5f64.sqrt()), 2.988_071_523_335_98, 1e-9);
        close(t.p_value.unwrap(), 0.040_415_044_746_287_8, 1e-9);
        let (lo, hi) = t.interval(0.95);
        close(lo, 0.003_541_187_292_296_18, 1e-9);
        close(hi, 0.096_458_812_707_703_8, 1e-9);
        let (lo, hi) = t.interval(0.99);
        close(lo, -0.027_041_242_744_581_75, 1e-9);
        close(hi, 0.127_041_242_744_581_76, 1e-9);
        // No spread: no test; one value: nothing.
        assert_eq!(PairedT::of(&[0.1, 0.1, 0.1]).unwrap().p_value, None);
        assert_eq!(PairedT::of(&[0.1]), None);
    }

    #[test]
    fn holm_matches_statsmodels_multipletests() {
        // multipletests([.01, .04, .03, .005, .2], alpha=.05, method="holm")[0]
        // = [True, False, False, True, False]: .005 ≤ .05/5, .01 ≤ .05/4, .03 > .05/3 stops.
        let p = [Some(0.01), Some(0.04), Some(0.03), Some(0.005), Some(0.2)];
        let got = holm(&p, 0.05);
        let rejected: Vec<bool> = got.iter().map(|g| g.0).collect();
        assert_eq!(rejected, [true, false, false, true, false]);
        close(got[3].1, 0.01, 1e-15);
        close(got[0].1, 0.0125, 1e-15);
        // Every one after the first failure is tested at the failing level, 0.05/3.
        for i in [1, 2, 4] {
            close(got[i].1, 0.05 / 3.0, 1e-15);
        }
        // [.012, .013, .2] → [True, True, False].
        let got = holm(&[Some(0.012), Some(0.013), Some(0.2)], 0.05);
        assert_eq!(
            got.iter().map(|g| g.0).collect::<Vec<_>>(),
            [true, true, false]
        );
        // A contrast without a test counts in m and is never rejected.
        let got = holm(&[None, Some(0.02)], 0.05);
        assert_eq!((got[0].0, got[1].0), (false, true));
        close(got[1].1, 0.025, 1e-15);
    }

    #[test]
    fn wilson_matches_statsmodels_proportion_confint() {
        // proportion_confint(k, 5, alpha=.05, method="wilson").
        let (lo, hi) = wilson(1.0, 5, 0.95).unwrap();
        close(lo, 0.036_224_108_632_430_2, 1e-9);
        close(hi, 0.624_465_370_237_474_8, 1e-9);
        let (lo, hi) = wilson(0.0, 5, 0.95).unwrap();
        close(lo, 0.0, 1e-12);
        close(hi, 0.434_482_464_783_174_9, 1e-9);
        let (lo, hi) = wilson(3.5, 5, 0.95).unwrap();
        close(lo, 0.298_791_054_072_393_3, 1e-9);
        close(hi, 0.927_415_960_014_336_6, 1e-9);
        assert_eq!(wilson(0.0, 0, 0.95), None);
    }

    #[test]
    fn correlation_improvement_spending_and_seeds_needed() {
        // scipy.stats.pearsonr(A, B).statistic.
        close(pearson(&A, &B).unwrap(), 0.811_667_342_191_956_5, 1e-9);
        assert_eq!(pearson(&[1.0, 1.0, 1.0], &A[..3]), None);
        // 0.55 three times has a mean that rounds: still no spread, no correlation.
        assert_eq!(pearson(&A[..3], &[0.55, 0.55, 0.55]), None);
        // A beats B in 4 of 5 seeds.
        let d: Vec<f64> = A.iter().zip(B).map(|(a, b)| a - b).collect();
        let (p, (lo, _)) = probability_of_improvement(&d).unwrap();
        close(p, 0.8, 1e-12);
        close(lo, wilson(4.0, 5, 0.95).unwrap().0, 1e-12);
        // A tie counts ½: (1 + ½ + 0) / 3.
        close(
            probability_of_improvement(&[0.1, 0.0, -0.1]).unwrap().0,
            0.5,
            1e-12,
        );
        // α·t³: half the seeds spend an eighth of α.
        close(alpha_spent(0.05, 0.5, 3.0), 0.00625, 1e-15);
        close(alpha_spent(0.05, 1.0, 3.0), 0.05, 1e-15);
        // scipy t quantiles: t.ppf(.99, 4) = 3.74694739, t.ppf(.8, 9) = 0.88340386.
        close(t_quantile(0.99, 4), 3.746_947_387_979_196, 1e-6);
        close(t_quantile(0.8, 9), 0.883_403_859_685_536_6, 1e-6);
        // sd 0.05, δ 0.03, α 0.05, power 0.8: 24 seeds (statsmodels' TTestPower, exact
        // noncentral t, solves 23.79); sd 0.02, δ 0.05: 4.
        assert_eq!(seeds_needed(0.05, 0.03, 0.05, 0.8), Some(24));
        assert_eq!(seeds_needed(0.02, 0.05, 0.05, 0.8), Some(4));
        assert_eq!(seeds_needed(0.05, 0.0, 0.05, 0.8), None);
    }
}
