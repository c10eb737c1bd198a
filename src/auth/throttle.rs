//! Login throttling: a per-IP rate limit on `/api/auth/*` (governor, in this node's
//! memory) and the per-account lockout policy (the counters live on `app_user`, so a
//! lockout holds across every node sharing the database).

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use chrono::{DateTime, Utc};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Per-client-IP request limit.
pub struct IpRateLimit {
    limiter: Option<DefaultKeyedRateLimiter<IpAddr>>,
}

impl IpRateLimit {
    /// `per_minute` requests per IP and minute (bursts up to that many); 0 = unlimited.
    pub fn new(per_minute: u32) -> Self {
        Self {
            limiter: NonZeroU32::new(per_minute).map(|n| RateLimiter::keyed(Quota::per_minute(n))),
        }
    }

    /// May this client make one more request now? Unknown addresses share one bucket.
    pub fn allow(&self, ip: Option<IpAddr>) -> bool {
        let Some(l) = &self.limiter else {
            return true;
        };
        let key = ip.unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let ok = l.check_key(&key).is_ok();
        if l.len() > 100_000 {
            l.retain_recent();
        }
        ok
    }
}

/// The account lockout policy.
#[derive(Debug, Clone, Copy)]
pub struct Lockout {
    /// Wrong passwords in a row that lock an account (0 = never lock).
    pub max_failed: u32,
    /// How long a lock lasts.
    pub duration: Duration,
}

impl Lockout {
    /// Is an account with this `locked_until` locked at `now`?
    pub fn is_locked(locked_until: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
        locked_until.is_some_and(|t| t > now)
    }

    /// When a lock starting at `now` ends.
    pub fn until(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now + chrono::Duration::from_std(self.duration).unwrap_or(chrono::Duration::zero())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_per_ip() {
        let r = IpRateLimit::new(3);
        let a = Some(IpAddr::from([10, 0, 0, 1]));
        let b = Some(IpAddr::from([10, 0, 0, 2]));
        assert!((0..3).all(|_| r.allow(a)));
        assert!(!r.allow(a), "the fourth request in a minute is refused");
        assert!(r.allow(b), "another client has its own budget");
        let unlimited = IpRateLimit::new(0);
        assert!((0..1000).all(|_| unlimited.allow(a)));
    }

    #[test]
    fn lock_window() {
        let now = Utc::now();
        let l = Lockout {
            max_failed: 5,
            duration: Duration::from_secs(60),
        };
        assert!(Lockout::is_locked(Some(l.until(now)), now));
        assert!(!Lockout::is_locked(Some(now), now));
        assert!(!Lockout::is_locked(None, now));
    }
}
