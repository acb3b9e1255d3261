//! Background work that speaks async protocols (HTTP, ZooKeeper sessions)
//! runs on a current-thread Tokio runtime on a thread of its own, so the
//! worker thread stays synchronous and a slow peer never holds it up.

use std::future::Future;

/// Runs `task` on its own thread and runtime. A failure to start either is
/// logged: the rest of the agent keeps working without that part.
pub fn spawn_async<F>(name: &'static str, task: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    let spawned =
        std::thread::Builder::new().name(name.into()).spawn(
            move || match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt.block_on(task),
                Err(e) => tracing::error!("{name}: cannot start its runtime: {e}"),
            },
        );
    if let Err(e) = spawned {
        tracing::error!("{name}: cannot start its thread: {e}");
    }
}
