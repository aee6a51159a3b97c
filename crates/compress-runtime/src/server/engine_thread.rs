//! The engine on its own thread, shared by every HTTP handler: requests go in over a channel,
//! each request's events come back over its own tokio channel. The thread steps the engine
//! while any sequence has work and sleeps on the channel otherwise. A handler that drops its
//! receiver (client gone) makes the engine abort the request and free its blocks.

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::engine::{Engine, Event, Request};
use crate::error::Result;

/// A snapshot of the engine for `/metrics` and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Sequences running.
    pub running: usize,
    /// Sequences waiting.
    pub waiting: usize,
    /// KV blocks in use.
    pub blocks_used: usize,
    /// KV blocks free.
    pub blocks_free: usize,
}

enum Cmd {
    Add(
        Request,
        tokio::sync::mpsc::UnboundedSender<Event>,
        Sender<Result<()>>,
    ),
    Stop,
}

/// Handle to the engine thread.
pub struct EngineHandle {
    tx: Mutex<Sender<Cmd>>,
    snapshot: Arc<Mutex<Snapshot>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl EngineHandle {
    /// Starts `engine` on a new thread.
    pub fn start(mut engine: Engine) -> Self {
        let (tx, rx) = channel::<Cmd>();
        let snapshot = Arc::new(Mutex::new(Snapshot::default()));
        let snap = Arc::clone(&snapshot);
        let thread = std::thread::spawn(move || {
            run(&mut engine, &rx, &snap);
        });
        Self {
            tx: Mutex::new(tx),
            snapshot,
            thread: Mutex::new(Some(thread)),
        }
    }

    /// Queues `req`; its events arrive on the returned receiver. Errors (a prompt longer than
    /// the context, …) come back before anything is queued.
    pub fn submit(&self, req: Request) -> Result<tokio::sync::mpsc::UnboundedReceiver<Event>> {
        let (etx, erx) = tokio::sync::mpsc::unbounded_channel();
        let (rtx, rrx) = channel();
        let sent = self
            .tx
            .lock()
            .expect("engine channel lock")
            .send(Cmd::Add(req, etx, rtx));
        if sent.is_err() {
            return Err(crate::error::RuntimeError::Invalid(
                "the engine has stopped".into(),
            ));
        }
        rrx.recv().unwrap_or_else(|_| {
            Err(crate::error::RuntimeError::Invalid(
                "the engine has stopped".into(),
            ))
        })?;
        Ok(erx)
    }

    /// The engine's state after its last step.
    pub fn snapshot(&self) -> Snapshot {
        *self.snapshot.lock().expect("snapshot lock")
    }

    /// Stops the thread after in-flight requests are aborted.
    pub fn stop(&self) {
        let _ = self.tx.lock().expect("engine channel lock").send(Cmd::Stop);
        if let Some(t) = self.thread.lock().expect("thread lock").take() {
            let _ = t.join();
        }
    }
}

impl Drop for EngineHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Bridges one request's engine events (std channel) to its handler (tokio channel); when the
/// handler is gone the bridge ends, its std receiver drops, and the engine aborts the request.
fn bridge(rx: Receiver<Event>, tx: tokio::sync::mpsc::UnboundedSender<Event>) {
    std::thread::spawn(move || {
        while let Ok(e) = rx.recv() {
            if tx.send(e).is_err() {
                break;
            }
        }
    });
}

fn run(engine: &mut Engine, rx: &Receiver<Cmd>, snap: &Mutex<Snapshot>) {
    loop {
        let cmd = if engine.has_work() {
            rx.try_recv().ok()
        } else {
            match rx.recv() {
                Ok(c) => Some(c),
                Err(_) => return,
            }
        };
        match cmd {
            Some(Cmd::Add(req, etx, reply)) => {
                let (tx, erx) = channel();
                let r = engine.add_request_with(req, tx).map(|_| ());
                if r.is_ok() {
                    bridge(erx, etx);
                }
                let _ = reply.send(r);
                continue;
            }
            Some(Cmd::Stop) => return,
            None => {}
        }
        if engine.has_work() {
            if let Err(e) = engine.step() {
                eprintln!("compress serve: engine step failed: {e}");
                return;
            }
        }
        let blocks = engine.blocks();
        *snap.lock().expect("snapshot lock") = Snapshot {
            running: engine.num_running(),
            waiting: engine.num_waiting(),
            blocks_used: blocks.num_used(),
            blocks_free: blocks.num_free(),
        };
    }
}
