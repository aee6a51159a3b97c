//! One request run to the end on an engine of its own, streaming tokens to a callback.

use super::{Engine, Event, FinishReason, Request};
use crate::error::Result;

impl Engine {
    /// Runs `req` (with `n = 1`) to completion, calling `on_token` for each token as it is
    /// sampled; returns the tokens and why generation stopped. Other queued requests advance too.
    pub fn generate(
        &mut self,
        req: Request,
        mut on_token: impl FnMut(u32),
    ) -> Result<(Vec<u32>, FinishReason)> {
        let (_, rx) = self.add_request(Request { n: 1, ..req })?;
        let mut tokens = Vec::new();
        loop {
            for ev in rx.try_iter() {
                match ev {
                    Event::Token { token, .. } => {
                        tokens.push(token);
                        on_token(token);
                    }
                    Event::Finished { reason, .. } => return Ok((tokens, reason)),
                }
            }
            self.step()?;
        }
    }
}
