//! Background tasks that never die silently.
//!
//! Each task of the server's upkeep runs on its own, so a long compaction
//! never delays a Parquet flush or the derived metrics. A task that panics
//! is logged with its message, counted in `/metrics`, and started again
//! after a pause; blocking work it hands to a thread panics the task with
//! it, instead of vanishing in a `JoinError` nobody reads.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;

/// Panics of background tasks since start, for `/metrics`.
pub static PANICS: AtomicU64 = AtomicU64::new(0);

/// How long a task that panicked waits before it starts again.
const RESTART_PAUSE: Duration = Duration::from_secs(1);

fn panic_message(e: &(dyn std::any::Any + Send)) -> String {
    e.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| e.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

/// Runs `task()` until it returns, restarting it after a panic, unless
/// `stop` has been raised meanwhile.
pub fn supervise<F, Fut>(
    name: &'static str,
    stop: watch::Receiver<bool>,
    mut task: F,
) -> tokio::task::JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            match tokio::spawn(task()).await {
                Ok(()) => return,
                Err(e) if e.is_panic() => {
                    PANICS.fetch_add(1, Ordering::Relaxed);
                    let msg = panic_message(&*e.into_panic());
                    tracing::error!(
                        task = name,
                        "background task panicked: {msg}; restarting it"
                    );
                }
                Err(_) => return,
            }
            if *stop.borrow() {
                return;
            }
            tokio::time::sleep(RESTART_PAUSE).await;
        }
    })
}

/// `f` on a blocking thread; its panic becomes this task's panic.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("blocking task cancelled: {e}"),
    }
}

/// Calls `tick()` every `every` until `stop`.
pub async fn every<Fut: Future<Output = ()>>(
    every: Duration,
    mut stop: watch::Receiver<bool>,
    mut tick: impl FnMut() -> Fut,
) {
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => tick().await,
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn a_panicking_task_is_logged_counted_and_restarted() {
        let runs = Arc::new(AtomicUsize::new(0));
        let before = PANICS.load(Ordering::Relaxed);
        let (_stop_tx, stop) = watch::channel(false);
        let r = runs.clone();
        let handle = supervise("test", stop, move || {
            let r = r.clone();
            async move {
                // The first run panics on a blocking thread, the second ends.
                if r.fetch_add(1, Ordering::SeqCst) == 0 {
                    blocking(|| panic!("boom")).await
                }
            }
        });
        handle.await.unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        assert!(PANICS.load(Ordering::Relaxed) > before);
    }
}
