//! The engine on its own thread, shared by every HTTP handler: commands go in over a channel,
//! each request's events come back over its own tokio channel (sent by the engine itself). The
//! thread steps the engine while any sequence has work and sleeps on the channel otherwise. A
//! handler whose client is gone aborts its request ([`Ticket`]), which frees its blocks.

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::engine::{Engine, Event, Request, RequestId};
use crate::error::{Result, RuntimeError};

/// A snapshot of the engine after its last step, for `/metrics` and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Sequences running.
    pub running: usize,
    /// Sequences waiting.
    pub waiting: usize,
    /// KV blocks in use (referenced by a live sequence).
    pub blocks_used: usize,
    /// KV blocks allocatable (free or evictable from the prefix cache).
    pub blocks_free: usize,
    /// KV blocks registered in the prefix cache.
    pub blocks_cached: usize,
    /// KV blocks in all.
    pub blocks_total: usize,
    /// Sequences preempted so far.
    pub preemptions: u64,
    /// Prompt tokens computed so far (prefix-cache hits excluded).
    pub prompt_tokens: u64,
    /// Prompt tokens served from the prefix cache so far.
    pub cached_prompt_tokens: u64,
    /// Tokens generated so far.
    pub generated_tokens: u64,
    /// Forward steps so far.
    pub steps: u64,
}

impl Snapshot {
    fn of(engine: &Engine) -> Self {
        let (blocks, stats) = (engine.blocks(), engine.stats());
        Self {
            running: engine.num_running(),
            waiting: engine.num_waiting(),
            blocks_used: blocks.num_used(),
            blocks_free: blocks.num_free(),
            blocks_cached: blocks.num_cached(),
            blocks_total: blocks.num_blocks(),
            preemptions: stats.preemptions,
            prompt_tokens: stats.prompt_tokens,
            cached_prompt_tokens: stats.cached_prompt_tokens,
            generated_tokens: stats.generated_tokens,
            steps: stats.steps,
        }
    }
}

type Reply = tokio::sync::oneshot::Sender<Result<RequestId>>;

enum Cmd {
    Add(Request, tokio::sync::mpsc::UnboundedSender<Event>, Reply),
    Abort(RequestId),
    StopSample(RequestId, usize),
    Stop,
}

/// Handle to the engine thread.
pub struct EngineHandle {
    tx: Mutex<Sender<Cmd>>,
    snapshot: Arc<Mutex<Snapshot>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// A queued request: its id and events. Dropping it (the client went away) aborts the request
/// unless it already finished.
pub struct Ticket {
    /// The engine's id of the request.
    pub id: RequestId,
    /// Its events.
    pub events: tokio::sync::mpsc::UnboundedReceiver<Event>,
    tx: Sender<Cmd>,
}

impl Ticket {
    /// Stops sample `index` (a stop string matched); the others go on.
    pub fn stop_sample(&self, index: usize) {
        let _ = self.tx.send(Cmd::StopSample(self.id, index));
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        // A finished request is unknown to the engine by now: aborting it is a no-op.
        let _ = self.tx.send(Cmd::Abort(self.id));
    }
}

fn stopped() -> RuntimeError {
    RuntimeError::Invalid("the engine has stopped".into())
}

impl EngineHandle {
    /// Starts `engine` on a new thread.
    pub fn start(mut engine: Engine) -> Self {
        let (tx, rx) = channel::<Cmd>();
        let snapshot = Arc::new(Mutex::new(Snapshot::of(&engine)));
        let snap = Arc::clone(&snapshot);
        let thread = std::thread::Builder::new()
            .name("compress-engine".into())
            .spawn(move || run(&mut engine, &rx, &snap))
            .expect("spawning the engine thread");
        Self {
            tx: Mutex::new(tx),
            snapshot,
            thread: Mutex::new(Some(thread)),
        }
    }

    /// Queues `req`. Errors (a prompt longer than the context, …) come back before anything is
    /// queued.
    pub async fn submit(&self, req: Request) -> Result<Ticket> {
        let (etx, events) = tokio::sync::mpsc::unbounded_channel();
        let (rtx, rrx) = tokio::sync::oneshot::channel();
        let tx = self.tx.lock().expect("engine channel lock").clone();
        tx.send(Cmd::Add(req, etx, rtx)).map_err(|_| stopped())?;
        let id = rrx.await.map_err(|_| stopped())??;
        Ok(Ticket { id, events, tx })
    }

    /// The engine's state after its last step.
    pub fn snapshot(&self) -> Snapshot {
        *self.snapshot.lock().expect("snapshot lock")
    }

    /// Stops the thread; requests still in flight end without a finish event.
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

fn run(engine: &mut Engine, rx: &Receiver<Cmd>, snap: &Mutex<Snapshot>) {
    loop {
        // Take every queued command before the next step (new requests join this step).
        let first = if engine.has_work() {
            rx.try_recv().ok()
        } else {
            match rx.recv() {
                Ok(c) => Some(c),
                Err(_) => return,
            }
        };
        for cmd in first
            .into_iter()
            .chain(std::iter::from_fn(|| rx.try_recv().ok()))
        {
            match cmd {
                Cmd::Add(req, etx, reply) => {
                    let _ = reply.send(engine.add_request_with(req, etx));
                }
                Cmd::Abort(id) => engine.abort(id),
                Cmd::StopSample(id, index) => engine.stop_sample(id, index),
                Cmd::Stop => return,
            }
        }
        if engine.has_work() {
            if let Err(e) = engine.step() {
                super::note(format_args!("engine step failed: {e}"));
                return;
            }
        }
        *snap.lock().expect("snapshot lock") = Snapshot::of(engine);
    }
}
