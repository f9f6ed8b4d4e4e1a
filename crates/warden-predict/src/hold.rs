//! Raise a condition only once it has held for a while; clear it only once it has been false
//! for a while. Both are measured on the times the condition is observed.

#[derive(Clone, Debug, Default)]
pub(crate) struct Hold {
    true_since: Option<f64>,
    last_true: Option<f64>,
    raised_at: Option<f64>,
}

impl Hold {
    /// Records the condition at `t`: raises once it has been true for `hold` seconds (true at
    /// every observation since), clears once it has been false for `clear_after` seconds.
    pub(crate) fn observe(&mut self, t: f64, cond: bool, hold: f64, clear_after: f64) {
        if cond {
            let since = *self.true_since.get_or_insert(t);
            self.last_true = Some(t);
            if self.raised_at.is_none() && t - since >= hold {
                self.raised_at = Some(t);
            }
        } else {
            self.true_since = None;
            if self.raised_at.is_some() && self.last_true.is_none_or(|l| t - l >= clear_after) {
                self.raised_at = None;
            }
        }
    }

    pub(crate) fn raised_at(&self) -> Option<f64> {
        self.raised_at
    }

    pub(crate) fn reset(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raises_after_the_hold_and_clears_after_the_quiet() {
        let mut h = Hold::default();
        for t in 0..5 {
            h.observe(f64::from(t), true, 5.0, 30.0);
        }
        assert_eq!(h.raised_at(), None, "true for 4 s only");
        h.observe(5.0, true, 5.0, 30.0);
        assert_eq!(h.raised_at(), Some(5.0));
        for t in 6..35 {
            h.observe(f64::from(t), false, 5.0, 30.0);
        }
        assert_eq!(h.raised_at(), Some(5.0), "false for 29 s only");
        h.observe(35.0, false, 5.0, 30.0);
        assert_eq!(h.raised_at(), None);
    }

    #[test]
    fn one_false_observation_restarts_the_hold() {
        let mut h = Hold::default();
        for t in 0..20 {
            h.observe(f64::from(t), t % 4 != 3, 5.0, 30.0);
        }
        assert_eq!(h.raised_at(), None);
    }
}
