//! The daemon's background threads, owned by it: each is started through
//! [`Background`], told to stop by one [`Shutdown`], and joined when the
//! daemon stops (SIGTERM). Work that speaks async protocols (HTTP,
//! ZooKeeper sessions) runs on a current-thread Tokio runtime on a thread of
//! its own, so the worker thread stays synchronous and a slow peer never
//! holds it up.

use std::future::Future;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One stop signal for every background thread. Sync threads sleep on it
/// ([`Shutdown::sleep`]); async tasks are dropped at their next await point
/// when it fires; a thread that waits on something else registers a waker.
#[derive(Clone, Default)]
pub struct Shutdown(Arc<Inner>);

#[derive(Default)]
struct Inner {
    set: Mutex<bool>,
    changed: Condvar,
    notify: tokio::sync::Notify,
    wakers: Mutex<Vec<Box<dyn Fn() + Send>>>,
}

impl Shutdown {
    /// Tells every background thread to stop.
    pub fn trigger(&self) {
        *self.0.set.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.0.changed.notify_all();
        self.0.notify.notify_waiters();
        for wake in self.0.wakers.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            wake();
        }
    }

    pub fn is_set(&self) -> bool {
        *self.0.set.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sleeps for `d` or until the shutdown; true if it is shutting down.
    pub fn sleep(&self, d: Duration) -> bool {
        let set = self.0.set.lock().unwrap_or_else(|e| e.into_inner());
        let (set, _) = self.0.changed.wait_timeout_while(set, d, |set| !*set).unwrap_or_else(|e| e.into_inner());
        *set
    }

    /// Runs `wake` when the shutdown fires (at once if it already has): for
    /// a thread blocked on its own channel.
    pub fn on_trigger(&self, wake: impl Fn() + Send + 'static) {
        let mut wakers = self.0.wakers.lock().unwrap_or_else(|e| e.into_inner());
        if self.is_set() {
            wake();
        }
        wakers.push(Box::new(wake));
    }

    /// Resolves when the shutdown fires.
    pub async fn wait(&self) {
        loop {
            let notified = self.0.notify.notified();
            tokio::pin!(notified);
            // Registered before the check: a trigger in between still wakes it.
            notified.as_mut().enable();
            if self.is_set() {
                return;
            }
            notified.await;
        }
    }
}

/// The process's stop request (SIGTERM, SIGINT), set by the signal thread
/// the moment it arrives, while the worker may be inside a plan: every wait
/// a plan makes on another party (a cluster lock, a broker's turn, canal's
/// hold, a service coming up or down, a drain) sleeps on it through
/// [`pause`] and ends within a pause of it, whatever its own deadline. The
/// plan then ends as interrupted, which the journal says.
pub fn stop_requested() -> &'static Shutdown {
    static STOP: std::sync::OnceLock<Shutdown> = std::sync::OnceLock::new();
    STOP.get_or_init(Shutdown::default)
}

/// A wait ended because the agent is stopping.
#[derive(Debug, thiserror::Error)]
#[error("the agent was asked to stop (SIGTERM) while waiting; the rest was not done")]
pub struct Stopping;

/// Sleeps `d` inside a wait on another party, or less if the agent is
/// asked to stop: then `Err`, so that the wait ends now.
pub fn pause(d: Duration) -> Result<(), Stopping> {
    match stop_requested().sleep(d) {
        true => Err(Stopping),
        false => Ok(()),
    }
}

/// The background threads the daemon started, and their stop signal.
#[derive(Default)]
pub struct Background {
    shutdown: Shutdown,
    threads: Vec<(&'static str, JoinHandle<()>)>,
}

impl Background {
    pub fn shutdown(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// Runs `work` on a thread of its own; it returns when the shutdown
    /// fires. A failure to start the thread is logged: the rest of the agent
    /// keeps working without that part.
    pub fn spawn(&mut self, name: &'static str, work: impl FnOnce(Shutdown) + Send + 'static) {
        let shutdown = self.shutdown.clone();
        match std::thread::Builder::new().name(name.into()).spawn(move || work(shutdown)) {
            Ok(handle) => self.threads.push((name, handle)),
            Err(e) => tracing::error!("{name}: cannot start its thread: {e}"),
        }
    }

    /// Runs `task` on its own thread and runtime until it ends or the
    /// shutdown fires.
    pub fn spawn_async<F>(&mut self, name: &'static str, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.spawn(name, move |shutdown| match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt.block_on(async {
                tokio::select! {
                    () = task => {}
                    () = shutdown.wait() => {}
                }
            }),
            Err(e) => tracing::error!("{name}: cannot start its runtime: {e}"),
        });
    }

    /// Fires the shutdown and joins every thread, waiting at most `within`
    /// in all; names the threads still running then (a service script
    /// mid-way, say): the process exits without them.
    pub fn stop(self, within: Duration) {
        self.shutdown.trigger();
        let deadline = Instant::now() + within;
        let mut late = Vec::new();
        for (name, handle) in self.threads {
            while !handle.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            match handle.is_finished() {
                true => {
                    if handle.join().is_err() {
                        tracing::error!("{name}: its thread panicked");
                    }
                }
                false => late.push(name),
            }
        }
        if !late.is_empty() {
            tracing::warn!("still running {} s after the shutdown: {}", within.as_secs(), late.join(", "));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_shutdown_stops_sync_and_async_threads_and_they_are_joined() {
        let mut bg = Background::default();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        bg.spawn("sleeper", |s| while !s.sleep(Duration::from_secs(3600)) {});
        bg.spawn("channel", move |s| {
            s.on_trigger(move || {
                let _ = tx.send(());
            });
            let _ = rx.recv_timeout(Duration::from_secs(3600));
        });
        bg.spawn_async("async", std::future::pending());
        let shutdown = bg.shutdown();
        let t = Instant::now();
        bg.stop(Duration::from_secs(10));
        assert!(t.elapsed() < Duration::from_secs(5), "joined in {:?}", t.elapsed());
        assert!(shutdown.is_set());
    }

    #[test]
    fn a_waker_registered_after_the_shutdown_runs_at_once() {
        let s = Shutdown::default();
        s.trigger();
        let (tx, rx) = std::sync::mpsc::channel();
        s.on_trigger(move || {
            let _ = tx.send(());
        });
        assert!(rx.try_recv().is_ok());
        assert!(s.sleep(Duration::from_secs(3600)));
    }
}
