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

/// Two-sided 97.5% quantile of Student's t with `df` degrees of freedom.
pub fn t_975(df: usize) -> f64 {
    const TABLE: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    match df {
        0 => f64::NAN,
        1..=30 => TABLE[df - 1],
        _ => 1.96,
    }
}

/// Mean with a 95% confidence interval (t distribution); the interval is `None` for one value.
pub fn mean_ci95(values: &[f64]) -> Option<(f64, Option<(f64, f64)>)> {
    let m = mean(values)?;
    let ci = sd(values).map(|s| {
        let half = t_975(values.len() - 1) * s / (values.len() as f64).sqrt();
        (m - half, m + half)
    });
    Some((m, ci))
}

/// "0.812 ± 0.013" (± sample sd), or just the mean for one value.
pub fn fmt_mean_sd(values: &[f64]) -> String {
    match (mean(values), sd(values)) {
        (None, _) => "–".into(),
        (Some(m), None) => format!("{m:.4}"),
        (Some(m), Some(s)) => format!("{m:.4} ± {s:.4}"),
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
        let half = 3.182 * (5.0f64 / 3.0).sqrt() / 2.0;
        let (lo, hi) = ci.unwrap();
        assert!(
            (m - 2.5).abs() < 1e-12
                && (lo - (2.5 - half)).abs() < 1e-9
                && (hi - (2.5 + half)).abs() < 1e-9
        );
        assert_eq!(mean_ci95(&[0.5]).unwrap(), (0.5, None));
        assert_eq!(fmt_mean_sd(&[]), "–");
    }
}
