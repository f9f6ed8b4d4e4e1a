//! Trailing windows of values and their robust centre and spread (median, 1.4826 · MAD), and
//! the ordinary least squares fit behind the RSS forecast.

use std::collections::VecDeque;

/// Values with their times, the oldest dropped once they are `span` seconds old.
#[derive(Clone, Debug)]
pub(crate) struct Window {
    span: f64,
    values: VecDeque<(f64, f64)>,
}

/// Median and σ estimated as 1.4826 · MAD (consistent for a normal distribution).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Robust {
    pub(crate) median: f64,
    pub(crate) sigma: f64,
}

/// Winsorized mean and long-run σ (see [`Window::winsorized`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct LongRun {
    pub(crate) mean: f64,
    pub(crate) sigma: f64,
    pub(crate) rho1: f64,
}

impl Window {
    pub(crate) fn new(span: f64) -> Self {
        Self { span, values: VecDeque::new() }
    }

    pub(crate) fn push(&mut self, t: f64, x: f64) {
        self.values.push_back((t, x));
        while self.values.front().is_some_and(|&(t0, _)| t0 <= t - self.span) {
            self.values.pop_front();
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.values.len()
    }

    pub(crate) fn clear(&mut self) {
        self.values.clear();
    }

    pub(crate) fn robust(&self) -> Option<Robust> {
        let mut xs: Vec<f64> = self.values.iter().map(|&(_, x)| x).collect();
        let median = median_of(&mut xs)?;
        for x in &mut xs {
            *x = (*x - median).abs();
        }
        let mad = median_of(&mut xs)?;
        Some(Robust { median, sigma: 1.4826 * mad })
    }

    /// Mean and long-run σ of the values Winsorized at the median ± `c` robust σ, in time
    /// order: σ² is their variance times `1 + 2ρ₁` (ρ₁, their lag-1 autocorrelation, taken in
    /// [0, 0.5]), the variance of a sum of weakly correlated batch means. Winsorizing keeps
    /// the efficiency of the mean and the standard deviation (MAD alone estimates σ with about
    /// twice the variance, and a CUSUM at h = 8 pays for an underestimate many times over) while
    /// an outlier still moves them by at most `c` σ.
    pub(crate) fn winsorized(&self, c: f64) -> Option<LongRun> {
        let r = self.robust()?;
        let n = self.values.len();
        if n < 2 {
            return None;
        }
        let (lo, hi) = (r.median - c * r.sigma, r.median + c * r.sigma);
        let ys: Vec<f64> = self.values.iter().map(|&(_, x)| x.clamp(lo, hi)).collect();
        let mean = ys.iter().sum::<f64>() / n as f64;
        let ss = ys.iter().map(|y| (y - mean).powi(2)).sum::<f64>();
        let lag1 = ys.windows(2).map(|w| (w[0] - mean) * (w[1] - mean)).sum::<f64>();
        let rho1 = if ss > 0.0 { (lag1 / ss).clamp(0.0, 0.5) } else { 0.0 };
        let sd = (ss / (n - 1) as f64).sqrt();
        Some(LongRun { mean, sigma: sd * (1.0 + 2.0 * rho1).sqrt(), rho1 })
    }

    /// Least squares line through the window: the fitted value at `t` and the slope per second.
    /// `None` with fewer than two distinct times.
    pub(crate) fn linear_fit(&self, t: f64) -> Option<(f64, f64)> {
        let n = self.values.len() as f64;
        if n < 2.0 {
            return None;
        }
        let tm = self.values.iter().map(|&(t, _)| t).sum::<f64>() / n;
        let xm = self.values.iter().map(|&(_, x)| x).sum::<f64>() / n;
        let (mut sxy, mut sxx) = (0.0, 0.0);
        for &(ti, xi) in &self.values {
            sxy += (ti - tm) * (xi - xm);
            sxx += (ti - tm) * (ti - tm);
        }
        if sxx <= 0.0 {
            return None;
        }
        let slope = sxy / sxx;
        Some((xm + slope * (t - tm), slope))
    }

    /// Seconds between the oldest and the newest value.
    pub(crate) fn covered(&self) -> f64 {
        match (self.values.front(), self.values.back()) {
            (Some(a), Some(b)) => b.0 - a.0,
            _ => 0.0,
        }
    }
}

fn median_of(xs: &mut [f64]) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    let n = xs.len();
    let mid = n / 2;
    let (_, &mut upper, _) = xs.select_nth_unstable_by(mid, f64::total_cmp);
    if n % 2 == 1 {
        return Some(upper);
    }
    let lower = xs[..mid].iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Some((lower + upper) / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_mad_ignore_outliers() {
        let mut w = Window::new(1800.0);
        for (i, x) in [1.0, 2.0, 3.0, 4.0, 5.0, 1000.0, -1000.0].into_iter().enumerate() {
            w.push(i as f64, x);
        }
        let r = w.robust().unwrap();
        assert_eq!(r.median, 3.0);
        // |x − 3| = 2 1 0 1 2 997 1003 → MAD 2.
        assert!((r.sigma - 2.0 * 1.4826).abs() < 1e-12);
        let mut even = Window::new(10.0);
        for (i, x) in [4.0, 1.0, 3.0, 2.0].into_iter().enumerate() {
            even.push(i as f64, x);
        }
        assert_eq!(even.robust().unwrap().median, 2.5);
    }

    #[test]
    fn winsorized_stats_bound_outliers_and_correct_for_autocorrelation() {
        let mut w = Window::new(1e9);
        // ±1 alternating: mean 0, sd ≈ 1, ρ₁ ≈ −1 → taken as 0.
        for i in 0..1000 {
            w.push(f64::from(i), if i % 2 == 0 { 1.0 } else { -1.0 });
        }
        let lr = w.winsorized(3.0).unwrap();
        assert!(lr.mean.abs() < 1e-9 && (lr.sigma - 1.0).abs() < 0.01 && lr.rho1 == 0.0, "{lr:?}");
        // One huge outlier counts as median + 3 robust σ (here 1 + 3 · 1.4826 · 2 ≈ 9.9), not
        // as 10⁹.
        w.push(1000.0, 1e9);
        let lr = w.winsorized(3.0).unwrap();
        assert!(lr.mean.abs() < 0.01 && (lr.sigma - 1.047).abs() < 0.01, "{lr:?}");
        // Slow blocks of +1/−1 (long runs) are strongly autocorrelated: ρ₁ capped at 0.5.
        let mut w = Window::new(1e9);
        for i in 0..1000 {
            w.push(f64::from(i), if (i / 10) % 2 == 0 { 1.0 } else { -1.0 });
        }
        let lr = w.winsorized(3.0).unwrap();
        assert_eq!(lr.rho1, 0.5);
        assert!((lr.sigma - 2f64.sqrt()).abs() < 0.01, "{lr:?}");
    }

    #[test]
    fn old_values_leave_the_window() {
        let mut w = Window::new(60.0);
        for t in 0..200 {
            w.push(f64::from(t), f64::from(t));
        }
        assert_eq!(w.len(), 60);
        assert_eq!(w.covered(), 59.0);
        assert!(Window::new(1.0).robust().is_none());
    }

    #[test]
    fn least_squares_recovers_a_line() {
        let mut w = Window::new(600.0);
        for t in 0..100 {
            let t = f64::from(t) * 5.0;
            w.push(t, 1e8 + 1e5 * t);
        }
        let (at, slope) = w.linear_fit(500.0).unwrap();
        assert!((slope - 1e5).abs() < 1e-3);
        assert!((at - (1e8 + 5e7)).abs() < 1.0);
        let mut one = Window::new(600.0);
        one.push(1.0, 1.0);
        assert!(one.linear_fit(1.0).is_none());
    }
}
