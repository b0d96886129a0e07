//! Backoff schedules and `Retry-After`: how long to wait before trying again.
//!
//! The exponential schedule with jitter comes from the `backoff` crate, used here only to compute
//! delays (it is flagged unmaintained, RUSTSEC-2025-0012, so it stays inside this one module). A
//! `Retry-After` from Microsoft is a floor that the schedule never undercuts.

use std::time::Duration;

use backoff::backoff::Backoff as _;
use chrono::{DateTime, Utc};

/// The shape of an exponential schedule, from `[retry]` in the configuration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackoffPolicy {
    /// The first delay.
    pub initial: Duration,
    /// The longest delay between two tries.
    pub max: Duration,
    /// How much each delay grows over the previous one.
    pub multiplier: f64,
    /// Random spread around each delay (0.5 means ±50 %), so that channels do not retry in step.
    pub randomization_factor: f64,
}

impl Default for BackoffPolicy {
    /// Microsoft's Graph SDK retry handler: 3 s initial, at most 180 s between tries.
    fn default() -> Self {
        BackoffPolicy {
            initial: Duration::from_secs(3),
            max: Duration::from_secs(180),
            multiplier: 2.0,
            randomization_factor: 0.5,
        }
    }
}

/// One channel's (or one request's) position in an exponential schedule.
#[derive(Debug)]
pub struct Backoff {
    inner: backoff::ExponentialBackoff,
    attempts: u32,
}

impl Backoff {
    /// A fresh schedule at its first delay.
    pub fn new(policy: BackoffPolicy) -> Self {
        let inner = backoff::ExponentialBackoffBuilder::new()
            .with_initial_interval(policy.initial)
            .with_max_interval(policy.max)
            .with_multiplier(policy.multiplier)
            .with_randomization_factor(policy.randomization_factor.clamp(0.0, 1.0))
            // A channel retries for as long as it exists; the status tells the operator.
            .with_max_elapsed_time(None)
            .build();
        Backoff { inner, attempts: 0 }
    }

    /// The delay before the next try: the schedule's next step, never less than `retry_after`.
    pub fn next_delay(&mut self, retry_after: Option<Duration>) -> Duration {
        self.attempts = self.attempts.saturating_add(1);
        let scheduled = self.inner.next_backoff().unwrap_or(self.inner.max_interval);
        match retry_after {
            Some(floor) => scheduled.max(floor),
            None => scheduled,
        }
    }

    /// How many delays this schedule has handed out since it was created or reset.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Back to the first delay, after a success.
    pub fn reset(&mut self) {
        self.inner.reset();
        self.attempts = 0;
    }
}

/// Parses a `Retry-After` value: seconds (possibly fractional, rounded up to the next millisecond)
/// or an HTTP date. `None` when the value is neither, or negative.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let trimmed = value.trim();
    if let Ok(secs) = trimmed.parse::<f64>() {
        if !secs.is_finite() || secs < 0.0 {
            return None;
        }
        // Round up so that a fractional value is never undercut.
        let millis = (secs * 1000.0).ceil();
        return Some(Duration::from_millis(millis.min(86_400_000.0) as u64));
    }
    let date = DateTime::parse_from_rfc2822(trimmed)
        .ok()?
        .with_timezone(&Utc);
    let wait = date.signed_duration_since(now);
    // A date in the past means "now"; cap absurd values at one day.
    Some(
        wait.to_std()
            .unwrap_or(Duration::ZERO)
            .min(Duration::from_secs(86_400)),
    )
}

/// An error with its causes, `outer: inner: root`, for messages that must say what really failed
/// (a refused connection, a reset) rather than only "error sending request".
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_seconds_fractions_and_dates() {
        let now = Utc::now();
        assert_eq!(parse_retry_after("2", now), Some(Duration::from_secs(2)));
        assert_eq!(
            parse_retry_after("2.128", now),
            Some(Duration::from_millis(2128))
        );
        assert_eq!(
            parse_retry_after("0.0001", now),
            Some(Duration::from_millis(1))
        );
        assert_eq!(parse_retry_after("-1", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
        let date = (now + chrono::Duration::seconds(30)).to_rfc2822();
        let wait = parse_retry_after(&date, now).unwrap_or_default();
        assert!(
            wait <= Duration::from_secs(30) && wait >= Duration::from_secs(29),
            "{wait:?}"
        );
        let past = (now - chrono::Duration::seconds(30)).to_rfc2822();
        assert_eq!(parse_retry_after(&past, now), Some(Duration::ZERO));
    }

    #[test]
    fn backoff_grows_and_never_undercuts_retry_after() {
        let policy = BackoffPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(10),
            multiplier: 2.0,
            randomization_factor: 0.0,
        };
        let mut backoff = Backoff::new(policy);
        let delays: Vec<Duration> = (0..8).map(|_| backoff.next_delay(None)).collect();
        assert_eq!(delays[0], Duration::from_millis(100));
        assert_eq!(delays[1], Duration::from_millis(200));
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(10)));
        assert_eq!(
            backoff.next_delay(Some(Duration::from_secs(60))),
            Duration::from_secs(60)
        );
        backoff.reset();
        assert_eq!(backoff.attempts(), 0);
        assert_eq!(backoff.next_delay(None), Duration::from_millis(100));
    }
}
