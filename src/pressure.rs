//! [`PressureLevel`]: how close usage is to the budget, with hysteresis,
//! and the [`PressureThresholds`] it is judged by.
//!
//! A leaf of the crate: errors, the memory module, batching and the service
//! all speak of pressure levels, and this module depends on none of them.

/// Where the pressure levels start, as fractions of the budget.
///
/// A plain value: start from [`Default`] and change what you need. It is
/// checked where it enters a [`MemoryConfig`](crate::memory::MemoryConfig)
/// ([`MemoryConfigBuilder::build`](crate::memory::MemoryConfigBuilder::build)),
/// so a budget never runs with thresholds out of order.
///
/// ```
/// use membatch::memory::MemoryConfig;
/// use membatch::PressureThresholds;
///
/// let mut t = PressureThresholds::default();
/// t.cautious = 0.7;
/// let config = MemoryConfig::builder().thresholds(t).build()?;
/// assert_eq!(config.thresholds().cautious, 0.7);
///
/// t.degraded = 0.6; // below cautious
/// assert!(MemoryConfig::builder().thresholds(t).build().is_err());
/// # Ok::<(), membatch::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct PressureThresholds {
    /// Start of [`Cautious`](PressureLevel::Cautious). Default 0.78.
    pub cautious: f64,
    /// Start of [`Degraded`](PressureLevel::Degraded). Default 0.88.
    pub degraded: f64,
    /// Start of [`Critical`](PressureLevel::Critical). Default 0.95.
    pub critical: f64,
    /// How far below a threshold usage must fall before the level drops
    /// back, so it does not flap between two batches. Default 0.03.
    pub hysteresis: f64,
}

impl Default for PressureThresholds {
    fn default() -> Self {
        PressureThresholds {
            cautious: 0.78,
            degraded: 0.88,
            critical: 0.95,
            hysteresis: 0.03,
        }
    }
}

impl PressureThresholds {
    /// Whether `0 < cautious < degraded < critical <= 1` and
    /// `0 <= hysteresis < 0.5`: what a budget can work with.
    pub fn is_valid(&self) -> bool {
        0.0 < self.cautious
            && self.cautious < self.degraded
            && self.degraded < self.critical
            && self.critical <= 1.0
            && (0.0..0.5).contains(&self.hysteresis)
    }
}

/// How close memory usage is to the budget.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PressureLevel {
    /// Well within the budget.
    #[default]
    Normal,
    /// Past the first threshold (default 78%): stop growing batches.
    Cautious,
    /// Past the second threshold (default 88%): shrink batches.
    Degraded,
    /// Past the last threshold (default 95%): run only what surely fits.
    Critical,
}

impl PressureLevel {
    /// The level for `fraction` (usage / budget), ignoring history.
    pub fn for_fraction(fraction: f64, t: &PressureThresholds) -> Self {
        if fraction >= t.critical {
            PressureLevel::Critical
        } else if fraction >= t.degraded {
            PressureLevel::Degraded
        } else if fraction >= t.cautious {
            PressureLevel::Cautious
        } else {
            PressureLevel::Normal
        }
    }

    /// The level after `self` when usage is now `fraction` of the budget.
    ///
    /// Rising is immediate. Falling needs usage to drop `hysteresis` below a
    /// level's threshold, so a figure hovering at a threshold keeps one level
    /// instead of flapping between two batches.
    pub fn next(self, fraction: f64, t: &PressureThresholds) -> Self {
        let raw = Self::for_fraction(fraction, t);
        if raw >= self {
            raw
        } else {
            // As if usage were `hysteresis` higher, but never above today's.
            Self::for_fraction(fraction + t.hysteresis, t).min(self)
        }
    }

    /// The lower-case name, as used in logs and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            PressureLevel::Normal => "normal",
            PressureLevel::Cautious => "cautious",
            PressureLevel::Degraded => "degraded",
            PressureLevel::Critical => "critical",
        }
    }
}

impl std::fmt::Display for PressureLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::PressureLevel::*;
    use super::*;

    fn t() -> PressureThresholds {
        PressureThresholds::default()
    }

    #[test]
    fn fractions_map_to_levels_at_the_default_thresholds() {
        let cases = [
            (0.0, Normal),
            (0.779, Normal),
            (0.78, Cautious),
            (0.879, Cautious),
            (0.88, Degraded),
            (0.95, Critical),
            (1.7, Critical),
        ];
        for (f, want) in cases {
            assert_eq!(PressureLevel::for_fraction(f, &t()), want, "{f}");
        }
    }

    #[test]
    fn rising_is_immediate_falling_needs_the_hysteresis_margin() {
        let mut level = Normal;
        let trace = [
            (0.80, Cautious),
            (0.77, Cautious), // within 0.03 of 0.78: stays
            (0.76, Cautious),
            (0.749, Normal),  // 0.749 + 0.03 < 0.78
            (0.96, Critical), // jumps straight up
            (0.93, Critical), // 0.93 + 0.03 >= 0.95
            (0.91, Degraded), // 0.94: below critical, above degraded
            (0.86, Degraded), // 0.89 >= 0.88
            (0.10, Normal),   // a big drop goes all the way down
        ];
        for (i, (f, want)) in trace.into_iter().enumerate() {
            level = level.next(f, &t());
            assert_eq!(level, want, "step {i}: fraction {f}");
        }
    }

    #[test]
    fn hovering_at_a_threshold_does_not_flap() {
        let mut level = Normal;
        let mut changes = 0;
        for i in 0..100 {
            let f = if i % 2 == 0 { 0.781 } else { 0.779 };
            let next = level.next(f, &t());
            changes += usize::from(next != level);
            level = next;
        }
        assert_eq!(changes, 1, "one rise to Cautious, then steady");
        assert_eq!(level, Cautious);
    }

    #[test]
    fn thresholds_must_rise_within_the_budget() {
        assert!(t().is_valid());
        let bad = [
            (0.0, 0.88, 0.95, 0.03),
            (0.9, 0.88, 0.95, 0.03),
            (0.78, 0.96, 0.95, 0.03),
            (0.78, 0.88, 1.01, 0.03),
            (0.78, 0.88, 0.95, 0.5),
            (0.78, 0.88, 0.95, -0.1),
            (f64::NAN, 0.88, 0.95, 0.03),
        ];
        for (cautious, degraded, critical, hysteresis) in bad {
            let t = PressureThresholds {
                cautious,
                degraded,
                critical,
                hysteresis,
            };
            assert!(!t.is_valid(), "{t:?}");
        }
    }

    #[test]
    fn levels_are_ordered_and_named() {
        assert!(Normal < Cautious && Cautious < Degraded && Degraded < Critical);
        assert_eq!(Critical.to_string(), "critical");
    }
}
