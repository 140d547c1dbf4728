//! Answers of API reads that many reconciles share, remembered for a while
//! so a burst of runs in one namespace (a namespace's uid, whether a
//! Workflow still exists) reads each once instead of once per run.
//!
//! Nothing is held across an `await`: two tasks that miss at once both
//! read, and the later answer wins. A caller that learns an answer is
//! wrong (a namespace deleted) calls [`Recent::forget`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Values by key, each trusted for `ttl` after it was read.
pub struct Recent<V> {
    ttl: Duration,
    entries: Mutex<HashMap<String, (V, Instant)>>,
}

impl<V: Clone> Recent<V> {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The value remembered for `key`, or what `read` answers (remembered
    /// unless it is an error).
    pub async fn get_or_read<E>(
        &self,
        key: &str,
        read: impl std::future::Future<Output = Result<V, E>>,
    ) -> Result<V, E> {
        if let Some(value) = self.get(key) {
            return Ok(value);
        }
        let value = read.await?;
        let mut entries = self.lock();
        // Expired entries go whenever one is added, so the map stays as
        // small as the set of keys used within `ttl`.
        entries.retain(|_, (_, read)| read.elapsed() < self.ttl);
        entries.insert(key.to_owned(), (value.clone(), Instant::now()));
        Ok(value)
    }

    fn get(&self, key: &str) -> Option<V> {
        let entries = self.lock();
        let (value, read) = entries.get(key)?;
        (read.elapsed() < self.ttl).then(|| value.clone())
    }

    /// Drops what is remembered for `key`: the next use reads again.
    pub fn forget(&self, key: &str) {
        self.lock().remove(key);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (V, Instant)>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    async fn read_counted(count: &AtomicUsize, value: u32) -> Result<u32, ()> {
        count.fetch_add(1, Ordering::SeqCst);
        Ok(value)
    }

    #[tokio::test]
    async fn a_value_is_read_once_until_forgotten() {
        let recent = Recent::new(Duration::from_secs(60));
        let reads = AtomicUsize::new(0);
        assert_eq!(
            recent.get_or_read("a", read_counted(&reads, 1)).await,
            Ok(1)
        );
        assert_eq!(
            recent.get_or_read("a", read_counted(&reads, 2)).await,
            Ok(1)
        );
        assert_eq!(reads.load(Ordering::SeqCst), 1);
        recent.forget("a");
        assert_eq!(
            recent.get_or_read("a", read_counted(&reads, 3)).await,
            Ok(3)
        );
        assert_eq!(reads.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn errors_and_expired_values_are_read_again() {
        let recent = Recent::new(Duration::ZERO);
        let reads = AtomicUsize::new(0);
        assert_eq!(
            recent.get_or_read("a", read_counted(&reads, 1)).await,
            Ok(1)
        );
        assert_eq!(
            recent.get_or_read("a", read_counted(&reads, 2)).await,
            Ok(2)
        );
        let failed: Result<u32, &str> = recent.get_or_read("b", async { Err("down") }).await;
        assert_eq!(failed, Err("down"));
        let recent = Recent::new(Duration::from_secs(60));
        let _: Result<u32, &str> = recent.get_or_read("b", async { Err("down") }).await;
        assert_eq!(
            recent.get_or_read("b", read_counted(&reads, 4)).await,
            Ok(4)
        );
    }
}
