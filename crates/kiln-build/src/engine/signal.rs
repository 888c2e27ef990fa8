//! A value set once by one thread and waited for by others, blocking: what
//! a background layer writer or a download tells the threads reading
//! behind it. (tokio's channels are for async waiters; these waiters are
//! blocking threads.)

use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// Unset until [`Signal::set`]; then it holds its value for good.
pub(crate) struct Signal<T> {
    value: Mutex<Option<T>>,
    set: Condvar,
}

impl<T> Default for Signal<T> {
    fn default() -> Self {
        Signal {
            value: Mutex::new(None),
            set: Condvar::new(),
        }
    }
}

impl<T: Clone> Signal<T> {
    /// Sets the value and wakes every waiter.
    pub(crate) fn set(&self, value: T) {
        *self.value.lock().unwrap_or_else(|e| e.into_inner()) = Some(value);
        self.set.notify_all();
    }

    /// Sets the value unless it was set before; true when this call set it.
    pub(crate) fn set_if_unset(&self, value: T) -> bool {
        let mut held = self.value.lock().unwrap_or_else(|e| e.into_inner());
        if held.is_some() {
            return false;
        }
        *held = Some(value);
        self.set.notify_all();
        true
    }

    /// The value, once set.
    pub(crate) fn get(&self) -> Option<T> {
        self.value.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Blocks until the value is set.
    pub(crate) fn wait(&self) -> T {
        let mut value = self.value.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(v) = value.as_ref() {
                return v.clone();
            }
            value = self.set.wait(value).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Blocks until the value is set or `limit` has passed.
    pub(crate) fn wait_at_most(&self, limit: Duration) {
        let value = self.value.lock().unwrap_or_else(|e| e.into_inner());
        if value.is_none() {
            let _ = self.set.wait_timeout(value, limit);
        }
    }
}

/// Sets a unit signal when dropped: a thread holds one so that its signal
/// is set however the thread ends, a panic included.
pub(crate) struct SetOnDrop(pub std::sync::Arc<Signal<()>>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.set(());
    }
}
