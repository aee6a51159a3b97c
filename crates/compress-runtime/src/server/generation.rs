//! One HTTP request's generation: its engine requests (one per prompt, each with `n` samples),
//! turned into text as tokens arrive. Text is decoded incrementally (whole characters only),
//! stop strings end a sample (the text stops before the match, and the engine stops that
//! sample), and while streaming, text that could still become a stop string is held back.

use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

use tokenizers::Tokenizer;

use super::engine_thread::Ticket;
use super::metrics::Metrics;
use crate::engine::{Event, FinishReason, TokenLogprobs};

/// Incremental detokenization: decodes a short window of tokens each time and emits the text
/// it adds to the window before the newest tokens, so tokenizers that drop a leading space or
/// split characters across byte tokens still give exactly the text of the whole sequence.
#[derive(Clone, Debug, Default)]
struct Detokenizer {
    prefix: usize,
    read: usize,
}

impl Detokenizer {
    fn decode(tok: &Tokenizer, ids: &[u32]) -> String {
        tok.decode(ids, true).unwrap_or_default()
    }

    /// The new text after `tokens` grew; empty while the last character is incomplete.
    fn step(&mut self, tok: &Tokenizer, tokens: &[u32]) -> String {
        let before = Self::decode(tok, &tokens[self.prefix..self.read]);
        let now = Self::decode(tok, &tokens[self.prefix..]);
        if now.len() > before.len() && !now.ends_with('\u{FFFD}') {
            if let Some(delta) = now.get(before.len()..) {
                self.prefix = self.read;
                self.read = tokens.len();
                return delta.to_string();
            }
        }
        String::new()
    }

    /// Whatever is left at the end (an incomplete character decodes as U+FFFD).
    fn flush(&mut self, tok: &Tokenizer, tokens: &[u32]) -> String {
        let before = Self::decode(tok, &tokens[self.prefix..self.read]);
        let now = Self::decode(tok, &tokens[self.prefix..]);
        self.prefix = tokens.len();
        self.read = tokens.len();
        now.get(before.len()..).unwrap_or_default().to_string()
    }
}

/// One sample (a choice of the response).
#[derive(Clone, Debug, Default)]
pub struct Sample {
    /// Tokens generated (including one that completed a stop string or a stop token).
    pub tokens: Vec<u32>,
    /// Text so far (cut before a matched stop string).
    pub text: String,
    /// Bytes of `text` already streamed.
    pub sent: usize,
    /// Log-probabilities of `tokens`, when asked for.
    pub logprobs: Vec<TokenLogprobs>,
    /// Text length (bytes) before each token's text, when logprobs are asked for.
    pub offsets: Vec<usize>,
    /// Why it ended (`None` while running).
    pub finish: Option<FinishReason>,
    detok: Detokenizer,
}

/// What one event changed, for a streamed chunk.
#[derive(Debug)]
pub struct Update {
    /// The choice index (`prompt · n + sample`).
    pub choice: usize,
    /// Text newly safe to send.
    pub text: String,
    /// The token that arrived, if any.
    pub token: Option<u32>,
    /// Its log-probabilities, when asked for.
    pub logprobs: Option<TokenLogprobs>,
    /// Set when the choice ended: `stop`, `length` or `abort`.
    pub finish: Option<&'static str>,
}

/// The OpenAI name of a finish reason.
pub fn finish_name(r: &FinishReason) -> &'static str {
    match r {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
        FinishReason::Aborted => "abort",
    }
}

/// A request's generation in progress.
pub struct Generation {
    tickets: Vec<Ticket>,
    n: usize,
    /// The samples, `prompt · n + sample`.
    pub samples: Vec<Sample>,
    /// Prompt tokens of all prompts (each counted once, whatever `n`).
    pub prompt_tokens: usize,
    stops: Vec<String>,
    /// Bytes of the longest stop string (0 without stops).
    longest_stop: usize,
    stream: bool,
    tokenizer: Option<Arc<Tokenizer>>,
    metrics: Arc<Metrics>,
    started: Instant,
    first_token_seen: bool,
}

impl Generation {
    /// Drives `tickets` (one per prompt, `n` samples each).
    pub fn new(
        tickets: Vec<Ticket>,
        n: usize,
        prompt_tokens: usize,
        stops: Vec<String>,
        stream: bool,
        tokenizer: Option<Arc<Tokenizer>>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            samples: vec![Sample::default(); tickets.len() * n],
            tickets,
            n,
            prompt_tokens,
            longest_stop: stops.iter().map(String::len).max().unwrap_or(0),
            stops,
            stream,
            tokenizer,
            metrics,
            started: Instant::now(),
            first_token_seen: false,
        }
    }

    /// Tokens generated over all samples.
    pub fn completion_tokens(&self) -> usize {
        self.samples.iter().map(|s| s.tokens.len()).sum()
    }

    /// The next event of any of the request's engine requests (`None` once all ended).
    async fn next_event(&mut self) -> Option<(usize, Event)> {
        std::future::poll_fn(|cx| {
            let mut open = false;
            for (i, t) in self.tickets.iter_mut().enumerate() {
                match t.events.poll_recv(cx) {
                    Poll::Ready(Some(e)) => return Poll::Ready(Some((i, e))),
                    Poll::Ready(None) => {}
                    Poll::Pending => open = true,
                }
            }
            match open {
                true => Poll::Pending,
                false => Poll::Ready(None),
            }
        })
        .await
    }

    /// The next change to report (`None` when every sample has ended).
    pub async fn next(&mut self) -> Option<Update> {
        loop {
            let (prompt, event) = self.next_event().await?;
            let (index, token, logprobs, reason) = match event {
                Event::Token {
                    index,
                    token,
                    logprobs,
                } => (index, Some(token), logprobs, None),
                Event::Finished { index, reason } => (index, None, None, Some(reason)),
            };
            let choice = prompt * self.n + index;
            if self.samples[choice].finish.is_some() {
                continue; // tokens the engine made before it heard of a stop string
            }
            if token.is_some() && !self.first_token_seen {
                self.first_token_seen = true;
                self.metrics
                    .observe_ttft(self.started.elapsed().as_secs_f64());
            }
            let mut finish = reason;
            let mut matched = false;
            let sample = &mut self.samples[choice];
            if let Some(t) = token {
                sample.tokens.push(t);
                if let Some(lp) = &logprobs {
                    sample.offsets.push(sample.text.len());
                    sample.logprobs.push((**lp).clone());
                }
                if let Some(tok) = &self.tokenizer {
                    let scan_from = sample.text.len();
                    let delta = sample.detok.step(tok, &sample.tokens);
                    sample.text += &delta;
                    if self.find_stop(choice, scan_from) {
                        self.tickets[prompt].stop_sample(index);
                        finish = Some(FinishReason::Stop);
                        matched = true;
                    }
                }
            }
            let sample = &mut self.samples[choice];
            // The engine ended the sample: decode what is left (a stop-string match already cut
            // the text, and nothing after the match belongs to it).
            if let (Some(_), Some(tok), false) = (&finish, &self.tokenizer, matched) {
                let scan_from = sample.text.len();
                let rest = sample.detok.flush(tok, &sample.tokens);
                if !rest.is_empty() {
                    sample.text += &rest;
                    if self.find_stop(choice, scan_from) {
                        finish = Some(FinishReason::Stop);
                    }
                }
            }
            let sample = &mut self.samples[choice];
            let end = match (&finish, self.stream) {
                // Hold back what could still grow into a stop string.
                (None, true) => safe_end(&sample.text, self.longest_stop.saturating_sub(1)),
                _ => sample.text.len(),
            };
            let text = sample.text[sample.sent.min(end)..end].to_string();
            sample.sent = sample.sent.max(end);
            sample.finish = finish.clone();
            if let Some(r) = &finish {
                self.metrics.finished(finish_name(r));
            }
            return Some(Update {
                choice,
                text,
                token,
                logprobs: logprobs.map(|b| *b),
                finish: finish.as_ref().map(finish_name),
            });
        }
    }

    /// Looks for a stop string in the sample's text from a little before `from`; on a match
    /// the text is cut before it and true is returned.
    fn find_stop(&mut self, choice: usize, from: usize) -> bool {
        let text = &mut self.samples[choice].text;
        let mut start = from.saturating_sub(self.longest_stop);
        while !text.is_char_boundary(start) {
            start -= 1;
        }
        let hit = self
            .stops
            .iter()
            .filter_map(|s| text[start..].find(s.as_str()))
            .min();
        match hit {
            Some(at) => {
                text.truncate(start + at);
                true
            }
            None => false,
        }
    }

    /// Runs every sample to its end (a sample left without a finish reason was aborted: the
    /// engine stopped).
    pub async fn run(&mut self) {
        while self.next().await.is_some() {}
    }
}

impl Drop for Generation {
    /// Samples that never finished (the client went away, or the engine stopped) count as
    /// aborted; dropping the tickets aborts them in the engine.
    fn drop(&mut self) {
        let unfinished = self.samples.iter().filter(|s| s.finish.is_none()).count();
        for _ in 0..unfinished {
            self.metrics.finished("abort");
        }
    }
}

/// The end of `text` minus `holdback` bytes (a possible stop-string prefix), on a character
/// boundary.
fn safe_end(text: &str, holdback: usize) -> usize {
    let mut end = text.len().saturating_sub(holdback);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incremental_text_equals_decoding_the_whole_sequence() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/models/demo/tokenizer.json"
        );
        let tok = Tokenizer::from_file(path).unwrap();
        // Text with multi-byte characters (split across byte-level tokens) and spaces.
        let text = "Ahab’s whale — “naïve” café, 東京 and 🐋 again.  Done";
        let ids = tok.encode(text, false).unwrap().get_ids().to_vec();
        let mut rng = 12345u64;
        for round in 0..20 {
            // The encoded text, and then random token sequences (any ids, eos included).
            let seq: Vec<u32> = match round {
                0 => ids.clone(),
                _ => (0..40)
                    .map(|_| {
                        rng = rng
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        ((rng >> 33) % 4096) as u32
                    })
                    .collect(),
            };
            let mut d = Detokenizer::default();
            let mut out = String::new();
            for i in 1..=seq.len() {
                let delta = d.step(&tok, &seq[..i]);
                assert!(!delta.contains('\u{FFFD}') || round > 0, "{delta:?}");
                out += &delta;
            }
            out += &d.flush(&tok, &seq);
            assert_eq!(out, tok.decode(&seq, true).unwrap(), "round {round}");
        }
    }

    #[test]
    fn safe_end_keeps_whole_characters() {
        assert_eq!(safe_end("abcé", 1), 3);
        assert_eq!(safe_end("abc", 0), 3);
        assert_eq!(safe_end("ab", 5), 0);
    }
}
