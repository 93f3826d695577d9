//! A minimal blocking connection pool for the read side: a stack of idle
//! connections and a factory for more, up to a bound.

use std::sync::{Condvar, Mutex};

use crate::StoreError;

type Factory<C> = Box<dyn Fn() -> Result<C, StoreError> + Send + Sync>;

pub(crate) struct Pool<C: Send + 'static> {
    idle: Mutex<(Vec<C>, usize)>,
    available: Condvar,
    size_max: usize,
    factory: Factory<C>,
}

pub(crate) struct Lease<'a, C: Send + 'static> {
    pool: &'a Pool<C>,
    connection: Option<C>,
    broken: bool,
}

impl<C: Send + 'static> Pool<C> {
    pub(crate) fn new(size_max: usize, factory: Factory<C>) -> Pool<C> {
        Pool {
            idle: Mutex::new((Vec::new(), 0)),
            available: Condvar::new(),
            size_max: size_max.max(1),
            factory,
        }
    }

    pub(crate) fn get(&self) -> Result<Lease<'_, C>, StoreError> {
        let mut guard = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(connection) = guard.0.pop() {
                return Ok(Lease {
                    pool: self,
                    connection: Some(connection),
                    broken: false,
                });
            }
            if guard.1 < self.size_max {
                guard.1 += 1;
                drop(guard);
                return match (self.factory)() {
                    Ok(connection) => Ok(Lease {
                        pool: self,
                        connection: Some(connection),
                        broken: false,
                    }),
                    Err(error) => {
                        self.idle.lock().unwrap_or_else(|e| e.into_inner()).1 -= 1;
                        self.available.notify_one();
                        Err(error)
                    }
                };
            }
            guard = self
                .available
                .wait(guard)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// (open connections, idle connections), for metrics.
    pub(crate) fn usage(&self) -> (usize, usize) {
        let guard = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        (guard.1, guard.0.len())
    }
}

impl<C: Send + 'static> Lease<'_, C> {
    /// Drops the connection instead of returning it (after an I/O error).
    pub(crate) fn discard(&mut self) {
        self.broken = true;
    }
}

impl<C: Send + 'static> std::ops::Deref for Lease<'_, C> {
    type Target = C;
    fn deref(&self) -> &C {
        self.connection
            .as_ref()
            .unwrap_or_else(|| unreachable!("lease holds a connection until dropped"))
    }
}

impl<C: Send + 'static> std::ops::DerefMut for Lease<'_, C> {
    fn deref_mut(&mut self) -> &mut C {
        self.connection
            .as_mut()
            .unwrap_or_else(|| unreachable!("lease holds a connection until dropped"))
    }
}

impl<C: Send + 'static> Drop for Lease<'_, C> {
    fn drop(&mut self) {
        let mut guard = self.pool.idle.lock().unwrap_or_else(|e| e.into_inner());
        match self.connection.take() {
            Some(connection) if !self.broken => guard.0.push(connection),
            _ => guard.1 -= 1,
        }
        self.pool.available.notify_one();
    }
}

impl<C: Send + 'static> Drop for Pool<C> {
    fn drop(&mut self) {
        // Closing a synchronous PostgreSQL connection blocks on its own small
        // runtime, which panics inside an async context; so close the idle
        // connections on a plain thread, wherever the pool is dropped.
        let idle = std::mem::take(&mut self.idle.get_mut().unwrap_or_else(|e| e.into_inner()).0);
        if !idle.is_empty() {
            let _ = std::thread::spawn(move || drop(idle)).join();
        }
    }
}
