//! Small statistics for reports: mean, sample standard deviation, t-based 95% intervals.

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
    use statrs::distribution::{ContinuousCDF, StudentsT};
    match StudentsT::new(0.0, 1.0, df as f64) {
        Ok(t) if df > 0 => t.inverse_cdf(0.975),
        _ => f64::NAN,
    }
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
}
