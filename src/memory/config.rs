//! [`MemoryConfig`]: how much memory the work may use, and when pressure starts.

use crate::error::{Error, Result};
use crate::pressure::PressureThresholds;

/// The default budget: 70% of the effective limit.
pub(crate) const DEFAULT_PERCENT: f64 = 70.0;

/// A memory budget as the user writes it: `70%` or a size such as `512MiB`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MemoryLimit {
    /// A percentage (0, 100] of the effective limit.
    Percent(f64),
    /// An absolute number of bytes.
    Bytes(u64),
}

impl MemoryLimit {
    /// Parses `70%`, `12.5%`, `512MiB`, `2GB`, `300M` or a plain byte count.
    /// Binary (`KiB`, `MiB`, `GiB`) and decimal (`KB`, `MB`, `GB`) units are
    /// both understood; a bare `K`/`M`/`G` is binary, as in container limits.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming `name` and the value.
    ///
    /// ```
    /// use membatch::memory::MemoryLimit;
    /// assert_eq!(MemoryLimit::parse("budget", "70%")?, MemoryLimit::Percent(70.0));
    /// assert_eq!(MemoryLimit::parse("budget", "512MiB")?, MemoryLimit::Bytes(512 << 20));
    /// assert_eq!(MemoryLimit::parse("budget", "2GB")?, MemoryLimit::Bytes(2_000_000_000));
    /// assert!(MemoryLimit::parse("budget", "lots").is_err());
    /// # Ok::<(), membatch::Error>(())
    /// ```
    pub fn parse(name: &str, value: &str) -> Result<Self> {
        let v = value.trim();
        if let Some(p) = v.strip_suffix('%') {
            return Ok(MemoryLimit::Percent(parse_percent(name, value, p)?));
        }
        Ok(MemoryLimit::Bytes(parse_size(name, value)?))
    }
}

fn parse_percent(name: &str, original: &str, number: &str) -> Result<f64> {
    match number.trim().parse::<f64>() {
        Ok(p) if p > 0.0 && p <= 100.0 => Ok(p),
        _ => Err(Error::invalid_config(
            name,
            original,
            "expected a percentage above 0 and at most 100, e.g. 70 or 70%",
        )),
    }
}

/// Parses a size such as `512MiB`, `2GB`, `300M` or `1048576` into bytes.
///
/// `bytesize` does the unit arithmetic; a bare `K`/`M`/`G`/`T` suffix is
/// read as binary first, since that is what container limits (`512M`) mean.
///
/// # Errors
///
/// [`Error::InvalidConfig`] naming `name` and the value.
pub(crate) fn parse_size(name: &str, value: &str) -> Result<u64> {
    let v = value.trim();
    let bad = || {
        Error::invalid_config(
            name,
            value,
            "expected a size such as 512MiB, 2GB, 300M or a number of bytes",
        )
    };
    let normalised = match v.chars().last() {
        Some(c) if "kKmMgGtT".contains(c) => format!("{v}iB"),
        _ => v.to_string(),
    };
    let bytes = normalised
        .parse::<bytesize::ByteSize>()
        .map_err(|_| bad())?
        .as_u64();
    if bytes == 0 {
        return Err(Error::invalid_config(
            name,
            value,
            "a zero budget cannot run anything",
        ));
    }
    Ok(bytes)
}

/// Memory settings: the budget, the pressure thresholds and how often
/// cleanup runs.
///
/// Built through [`MemoryConfig::builder`] (or [`Config`](crate::Config)),
/// which checks every setting, so a [`MemoryBudget`](super::MemoryBudget)
/// never runs with a budget above the container or thresholds out of order.
///
/// ```
/// use membatch::memory::{MemoryConfig, MemoryLimit};
///
/// let config = MemoryConfig::builder().limit(MemoryLimit::Percent(50.0)).build()?;
/// assert_eq!(config.budget_bytes(2 << 30), 1 << 30);
/// assert!(MemoryConfig::builder().max_percent(500.0).build().is_err());
/// # Ok::<(), membatch::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryConfig {
    max_percent: Option<f64>,
    max_bytes: Option<u64>,
    thresholds: PressureThresholds,
    cleanup_every: u32,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            max_percent: None,
            max_bytes: None,
            thresholds: PressureThresholds::default(),
            cleanup_every: 10,
        }
    }
}

impl MemoryConfig {
    /// A builder starting from the defaults.
    pub fn builder() -> MemoryConfigBuilder {
        MemoryConfig::default().into_builder()
    }

    /// A builder starting from these settings.
    pub fn into_builder(self) -> MemoryConfigBuilder {
        MemoryConfigBuilder { config: self }
    }

    /// The budget as a percentage of the effective limit, when set.
    pub fn max_percent(&self) -> Option<f64> {
        self.max_percent
    }

    /// The budget as an absolute size, when set. When both are set the
    /// smaller budget wins.
    pub fn max_bytes(&self) -> Option<u64> {
        self.max_bytes
    }

    /// The pressure level thresholds.
    pub fn thresholds(&self) -> PressureThresholds {
        self.thresholds
    }

    /// A cleanup is forced every this many guards (0: only under pressure).
    pub fn cleanup_every(&self) -> u32 {
        self.cleanup_every
    }

    /// The budget for a machine whose effective limit is `effective_limit`:
    /// the percentage (default 70%) or the size, whichever is smaller, and
    /// never above the limit. With the limit unknown (0: the system's
    /// memory could not be read), an absolute size is taken as it is, and a
    /// percentage gives 0: no budget.
    pub fn budget_bytes(&self, effective_limit: u64) -> u64 {
        if effective_limit == 0 {
            return self.max_bytes.unwrap_or(0);
        }
        let percent = match (self.max_percent, self.max_bytes) {
            (None, None) => Some(DEFAULT_PERCENT),
            (p, _) => p,
        };
        let by_percent = percent.map(|p| (effective_limit as f64 * p / 100.0) as u64);
        let by_bytes = self.max_bytes.map(|b| b.min(effective_limit));
        match (by_percent, by_bytes) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) => a,
            (None, Some(b)) => b,
            (None, None) => effective_limit,
        }
    }

    /// Checks the settings; the builder's `build` calls it.
    fn validate(&self) -> Result<()> {
        if let Some(p) = self.max_percent {
            if !(p > 0.0 && p <= 100.0) {
                return Err(Error::invalid_config(
                    "max_percent",
                    p,
                    "must be above 0 and at most 100",
                ));
            }
        }
        if self.max_bytes == Some(0) {
            return Err(Error::invalid_config(
                "max_bytes",
                0,
                "a zero budget cannot run anything",
            ));
        }
        if !self.thresholds.is_valid() {
            return Err(Error::invalid_config(
                "thresholds",
                format!("{:?}", self.thresholds),
                "need 0 < cautious < degraded < critical <= 1 and 0 <= hysteresis < 0.5",
            ));
        }
        Ok(())
    }
}

/// Builds a validated [`MemoryConfig`].
#[derive(Debug, Clone)]
#[must_use]
pub struct MemoryConfigBuilder {
    config: MemoryConfig,
}

impl MemoryConfigBuilder {
    /// Budget as a percentage (0, 100] of the effective limit. Default 70.
    pub fn max_percent(mut self, percent: f64) -> Self {
        self.config.max_percent = Some(percent);
        self
    }

    /// Budget as an absolute number of bytes (with a percentage set too,
    /// the smaller budget wins).
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.config.max_bytes = Some(bytes);
        self
    }

    /// The budget as parsed by [`MemoryLimit::parse`], replacing any
    /// percentage or size set before.
    pub fn limit(mut self, limit: MemoryLimit) -> Self {
        (self.config.max_percent, self.config.max_bytes) = match limit {
            MemoryLimit::Percent(p) => (Some(p), None),
            MemoryLimit::Bytes(b) => (None, Some(b)),
        };
        self
    }

    /// Pressure thresholds.
    pub fn thresholds(mut self, thresholds: PressureThresholds) -> Self {
        self.config.thresholds = thresholds;
        self
    }

    /// Force a cleanup every `n` guards (0: only under pressure). Default 10.
    pub fn cleanup_every(mut self, n: u32) -> Self {
        self.config.cleanup_every = n;
        self
    }

    /// Checks the settings.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for a percentage outside (0, 100], a zero
    /// size, or thresholds that are not increasing within (0, 1].
    pub fn build(self) -> Result<MemoryConfig> {
        self.config.validate()?;
        Ok(self.config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_binary_and_decimal_units() {
        let cases = [
            ("512MiB", 512u64 << 20),
            ("512 MiB", 512 << 20),
            ("2GB", 2_000_000_000),
            ("1.5GiB", 3 << 29),
            ("300M", 300 << 20),
            ("300m", 300 << 20),
            ("4G", 4 << 30),
            ("1048576", 1 << 20),
        ];
        for (text, want) in cases {
            assert_eq!(parse_size("x", text).unwrap(), want, "{text}");
        }
        for bad in ["", "lots", "-5MiB", "0", "12 parsecs"] {
            assert!(parse_size("x", bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn limits_parse_as_sizes_or_percentages_and_bad_ones_name_their_origin() {
        assert_eq!(
            MemoryLimit::parse("x", "50%").unwrap(),
            MemoryLimit::Percent(50.0)
        );
        assert_eq!(
            MemoryLimit::parse("x", "300MiB").unwrap(),
            MemoryLimit::Bytes(300 << 20)
        );
        for value in ["0%", "150%", "seventy%", "a lot"] {
            match MemoryLimit::parse("--memory-budget", value) {
                Err(Error::InvalidConfig { name, value: v, .. }) => {
                    assert_eq!((name.as_str(), v.as_str()), ("--memory-budget", value));
                }
                other => panic!("{value}: expected InvalidConfig, got {other:?}"),
            }
        }
    }

    #[test]
    fn budget_is_a_share_of_the_effective_limit_or_a_size_whichever_is_smaller() {
        let gib = 1u64 << 30;
        assert_eq!(MemoryConfig::default().budget_bytes(10 * gib), 7 * gib);
        let half = MemoryConfig::builder().max_percent(50.0).build().unwrap();
        assert_eq!(half.budget_bytes(2 * gib), gib);
        let abs = MemoryConfig::builder()
            .max_bytes(512 << 20)
            .build()
            .unwrap();
        assert_eq!(abs.budget_bytes(10 * gib), 512 << 20);
        assert_eq!(
            abs.budget_bytes(256 << 20),
            256 << 20,
            "never above the limit"
        );
        let both = MemoryConfig::builder()
            .max_percent(10.0)
            .max_bytes(512 << 20)
            .build()
            .unwrap();
        assert_eq!(both.budget_bytes(10 * gib), 512 << 20);
        assert_eq!(both.budget_bytes(gib), gib / 10);
        // An unknown limit: an absolute size stands, a percentage is nothing.
        assert_eq!(abs.budget_bytes(0), 512 << 20);
        assert_eq!(MemoryConfig::default().budget_bytes(0), 0);
    }

    #[test]
    fn builder_rejects_impossible_settings() {
        assert!(MemoryConfig::builder().max_percent(0.0).build().is_err());
        assert!(MemoryConfig::builder().max_percent(101.0).build().is_err());
        assert!(MemoryConfig::builder()
            .max_percent(f64::NAN)
            .build()
            .is_err());
        assert!(MemoryConfig::builder().max_bytes(0).build().is_err());
        let backwards = PressureThresholds {
            cautious: 0.9,
            degraded: 0.8,
            ..PressureThresholds::default()
        };
        assert!(MemoryConfig::builder()
            .thresholds(backwards)
            .build()
            .is_err());
        assert_eq!(
            MemoryLimit::parse("b", "70%").unwrap(),
            MemoryLimit::Percent(70.0)
        );
        assert!(MemoryLimit::parse("b", "0%").is_err());
    }
}
