//! The counting algorithm, in Rust: the in-process fallback runs it, and
//! `script.lua` runs the same steps inside Redis (keep the two in step).
//!
//! A window of length `W` is cut into `n` sub-windows ("buckets") of width
//! `W / n`, each holding a count. A check sums the buckets that overlap the
//! last `W` milliseconds — the current one, the `n - 1` before it, and the
//! oldest one, which overlaps only partly but is counted whole. The sum is
//! therefore never below the exact count of a sliding window, so no interval
//! of length `W` ever admits more than `limit` requests; and it exceeds the
//! exact count only by hits that are at most `W / n` too old, so a client is
//! refused at most `W / n` longer than an exact request log would refuse it.

use std::collections::VecDeque;

/// One window to check: its limit, bucket width and bucket count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSpec {
    pub limit: u64,
    pub bucket_ms: i64,
    pub buckets: i64,
}

impl WindowSpec {
    pub fn new(limit: u64, window_ms: u64, buckets: u32) -> Self {
        let buckets = i64::from(buckets.max(1));
        Self {
            limit,
            bucket_ms: (window_ms as i64 / buckets).max(1),
            buckets,
        }
    }

    fn current(&self, now_ms: i64) -> i64 {
        now_ms.div_euclid(self.bucket_ms)
    }

    /// The oldest bucket still counted at `now_ms`.
    fn oldest(&self, now_ms: i64) -> i64 {
        self.current(now_ms) - self.buckets
    }

    /// Milliseconds from `now_ms` until bucket `index` stops being counted.
    fn leaves_at(&self, index: i64, now_ms: i64) -> u64 {
        ((index + self.buckets + 1) * self.bucket_ms - now_ms).max(0) as u64
    }
}

/// What one window says about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WindowState {
    /// Requests counted in the window before this one.
    pub count: u64,
    /// When the window is full: milliseconds until it admits a request again.
    pub retry_ms: u64,
    /// Milliseconds until every counted request has left the window.
    pub reset_ms: u64,
}

impl WindowState {
    pub fn is_full(&self, spec: &WindowSpec) -> bool {
        self.count >= spec.limit
    }
}

/// Buckets `(index, count)`, oldest first: one window's counts.
#[derive(Debug, Default, Clone)]
pub struct Buckets(VecDeque<(i64, u64)>);

impl Buckets {
    /// The state of the window at `now_ms`, without recording anything.
    pub fn evaluate(&self, spec: &WindowSpec, now_ms: i64) -> WindowState {
        let oldest = spec.oldest(now_ms);
        let live = || self.0.iter().filter(move |(index, _)| *index >= oldest);
        let count: u64 = live().map(|(_, hits)| hits).sum();
        let mut retry_ms = 0;
        if count >= spec.limit {
            // Enough of the oldest hits must age out to leave room for one.
            let need = count - spec.limit + 1;
            let mut freed = 0;
            for &(index, hits) in live() {
                freed += hits;
                if freed >= need {
                    retry_ms = spec.leaves_at(index, now_ms);
                    break;
                }
            }
        }
        let reset_ms = live()
            .map(|(index, _)| *index)
            .max()
            .map_or(0, |newest| spec.leaves_at(newest, now_ms));
        WindowState {
            count,
            retry_ms,
            reset_ms,
        }
    }

    /// Counts one request at `now_ms` and drops buckets no longer counted.
    pub fn record(&mut self, spec: &WindowSpec, now_ms: i64) {
        let current = spec.current(now_ms);
        let oldest = spec.oldest(now_ms);
        while self.0.front().is_some_and(|(index, _)| *index < oldest) {
            self.0.pop_front();
        }
        match self.0.back_mut() {
            Some((index, hits)) if *index == current => *hits += 1,
            _ => self.0.push_back((current, 1)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 10 requests per second, in 100 ms buckets.
    fn spec() -> WindowSpec {
        WindowSpec::new(10, 1_000, 10)
    }

    fn fill(buckets: &mut Buckets, at: i64, hits: u64) {
        for _ in 0..hits {
            buckets.record(&spec(), at);
        }
    }

    #[test]
    fn admits_up_to_the_limit_then_refuses() {
        let mut buckets = Buckets::default();
        fill(&mut buckets, 5_000, 10);
        let state = buckets.evaluate(&spec(), 5_000);
        assert_eq!(state.count, 10);
        assert!(state.is_full(&spec()));
        // Bucket 50 leaves the count when the current bucket is 61: at 6100 ms.
        assert_eq!(state.retry_ms, 1_100);
        assert_eq!(state.reset_ms, 1_100);
    }

    #[test]
    fn never_admits_more_than_the_limit_in_any_window() {
        // Hits at the end of one window and the start of the next: an exact
        // sliding window of 1 s starting at 5950 sees them all.
        let mut buckets = Buckets::default();
        fill(&mut buckets, 5_950, 10);
        for now in (5_950..7_100).step_by(10) {
            let state = buckets.evaluate(&spec(), now);
            if now < 7_000 {
                assert!(state.is_full(&spec()), "admitted at {now}");
            }
        }
        // Counted whole until the bucket [5900, 6000) is more than n buckets old.
        assert!(!buckets.evaluate(&spec(), 7_000).is_full(&spec()));
    }

    #[test]
    fn refuses_at_most_one_bucket_longer_than_an_exact_window() {
        let mut buckets = Buckets::default();
        fill(&mut buckets, 5_900, 10);
        // An exact window admits again at 6900 (the hits are then 1 s old);
        // the buckets admit at 7000: one bucket width later.
        assert!(buckets.evaluate(&spec(), 6_999).is_full(&spec()));
        assert!(!buckets.evaluate(&spec(), 7_000).is_full(&spec()));
    }

    #[test]
    fn retry_waits_only_for_the_hits_that_must_age_out() {
        let mut buckets = Buckets::default();
        fill(&mut buckets, 5_000, 3);
        fill(&mut buckets, 5_500, 7);
        let state = buckets.evaluate(&spec(), 5_600);
        assert_eq!(state.count, 10);
        // Freeing one slot needs only the three oldest hits gone: at 6100.
        assert_eq!(state.retry_ms, 500);
        // Everything is gone when bucket 55 leaves: at 6600.
        assert_eq!(state.reset_ms, 1_000);
    }

    #[test]
    fn old_buckets_are_dropped_when_recording() {
        let mut buckets = Buckets::default();
        fill(&mut buckets, 1_000, 5);
        fill(&mut buckets, 60_000, 1);
        assert_eq!(buckets.0.len(), 1);
        assert_eq!(buckets.evaluate(&spec(), 60_000).count, 1);
    }

    #[test]
    fn a_window_shorter_than_its_bucket_count_still_works() {
        let spec = WindowSpec::new(1, 5, 10);
        assert_eq!(spec.bucket_ms, 1);
        let mut buckets = Buckets::default();
        buckets.record(&spec, 100);
        assert!(buckets.evaluate(&spec, 100).is_full(&spec));
    }
}
