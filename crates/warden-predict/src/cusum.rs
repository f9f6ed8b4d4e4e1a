//! One-sided upper tabular CUSUM (Page 1954) on standardized batch means.
//!
//! `S = max(0, S + min(z, clip) − k)`, alarm when `S ≥ h`. The input is clipped (a Huber-style
//! CUSUM) so that one outlying batch — a stall, a burst of slow calls — can add at most
//! `clip − k` to the sum: with k = 0.5, h = 8 or 9 and clip = 4, no fewer than three elevated
//! batches (30 s) raise an alarm, whatever their size. Once raised, `S` is held at `h` and the
//! alarm clears when `S` has drained back to zero (2h in-control batches at least), which is
//! also the reset.

/// What one batch did to the chart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    Quiet,
    Raised,
    Cleared,
}

#[derive(Clone, Debug)]
pub(crate) struct Cusum {
    k: f64,
    h: f64,
    clip: f64,
    s: f64,
    /// Start of the first batch of the current excursion (where `S` left zero).
    run_start: Option<f64>,
    alarm: Option<Alarm>,
}

/// A raised alarm: where the excursion began and when it crossed `h`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Alarm {
    pub(crate) since: f64,
    pub(crate) raised_at: f64,
}

impl Cusum {
    pub(crate) fn new(k: f64, h: f64, clip: f64) -> Self {
        Self { k, h, clip, s: 0.0, run_start: None, alarm: None }
    }

    /// Feeds one standardized batch `z` covering `[start, end)`.
    pub(crate) fn update(&mut self, start: f64, end: f64, z: f64) -> Step {
        if !z.is_finite() {
            return Step::Quiet;
        }
        let before = self.s;
        self.s = (self.s + z.min(self.clip) - self.k).max(0.0);
        if self.s == 0.0 {
            self.run_start = None;
            if self.alarm.take().is_some() {
                return Step::Cleared;
            }
            return Step::Quiet;
        }
        if before == 0.0 {
            self.run_start = Some(start);
        }
        if self.alarm.is_some() {
            self.s = self.s.min(self.h);
            return Step::Quiet;
        }
        if self.s >= self.h {
            self.s = self.h;
            self.alarm = Some(Alarm { since: self.run_start.unwrap_or(start), raised_at: end });
            return Step::Raised;
        }
        Step::Quiet
    }

    /// The statistic, in units of σ.
    pub(crate) fn value(&self) -> f64 {
        self.s
    }

    pub(crate) fn alarm(&self) -> Option<Alarm> {
        self.alarm
    }

    /// The alarm as a [`crate::Drift`] of `signal`, from `baseline` to `recent`.
    pub(crate) fn drift(
        &self,
        signal: crate::Signal,
        baseline: f64,
        recent: f64,
    ) -> Option<crate::Drift> {
        let alarm = self.alarm?;
        Some(crate::Drift {
            signal,
            since: alarm.since,
            raised_at: alarm.raised_at,
            cusum: self.value(),
            baseline,
            recent,
        })
    }

    pub(crate) fn reset(&mut self) {
        self.s = 0.0;
        self.run_start = None;
        self.alarm = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart() -> Cusum {
        Cusum::new(0.5, 8.0, 4.0)
    }

    fn feed(c: &mut Cusum, from: usize, zs: &[f64]) -> Vec<(usize, Step)> {
        zs.iter()
            .enumerate()
            .map(|(i, &z)| {
                let b = from + i;
                (b, c.update(b as f64 * 10.0, (b + 1) as f64 * 10.0, z))
            })
            .filter(|(_, s)| *s != Step::Quiet)
            .collect()
    }

    #[test]
    fn in_control_stays_quiet() {
        let mut c = chart();
        let zs: Vec<f64> = (0..10_000).map(|i| [0.4, -0.3, 1.2, -1.1, 0.0][i % 5]).collect();
        assert!(feed(&mut c, 0, &zs).is_empty());
        assert!(c.value() < 8.0);
    }

    #[test]
    fn a_one_sigma_shift_alarms_after_sixteen_batches() {
        let mut c = chart();
        feed(&mut c, 0, &[0.0; 5]);
        // +1σ adds 0.5 per batch: S reaches 8 on the 16th batch of the shift.
        let steps = feed(&mut c, 5, &[1.0; 20]);
        assert_eq!(steps, vec![(20, Step::Raised)]);
        let alarm = c.alarm().unwrap();
        assert_eq!(alarm.since, 50.0, "the excursion began with batch 5");
        assert_eq!(alarm.raised_at, 210.0);
    }

    #[test]
    fn one_huge_batch_cannot_alarm_and_two_cannot_either() {
        let mut c = chart();
        assert!(feed(&mut c, 0, &[1000.0, 1000.0]).is_empty());
        assert_eq!(c.value(), 7.0);
        // A third one does.
        assert_eq!(feed(&mut c, 2, &[1000.0]), vec![(2, Step::Raised)]);
    }

    #[test]
    fn clears_after_draining_and_then_starts_afresh() {
        let mut c = chart();
        feed(&mut c, 0, &[4.0; 3]);
        assert!(c.alarm().is_some());
        // Held at h; in-control batches (z = 0) drain 0.5 each: 16 batches.
        let steps = feed(&mut c, 3, &[0.0; 16]);
        assert_eq!(steps, vec![(18, Step::Cleared)]);
        assert_eq!(c.value(), 0.0);
        assert!(c.alarm().is_none());
        assert!(feed(&mut c, 19, &[4.0, 4.0]).is_empty(), "a fresh excursion needs three again");
    }

    #[test]
    fn non_finite_input_is_ignored() {
        let mut c = chart();
        assert_eq!(c.update(0.0, 10.0, f64::NAN), Step::Quiet);
        assert_eq!(c.value(), 0.0);
    }
}
