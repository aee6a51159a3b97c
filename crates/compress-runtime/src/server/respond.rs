//! What both generation endpoints do once a request is checked: submit one engine request per
//! prompt, then answer with one JSON body or with server-sent events ending in `[DONE]`. The
//! two endpoints differ only in the shape of their choices ([`Endpoint`]).

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::error::{overloaded, ApiError};
use super::generation::{finish_name, Generation, Sample, Update};
use super::params::Plan;
use super::AppState;
use crate::engine::{FinishReason, TokenLogprobs};

/// Which API shape a response takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v1/completions`: choices carry `text`.
    Completions,
    /// `/v1/chat/completions`: choices carry an assistant `message` (`delta` when streaming).
    Chat,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Endpoint {
    fn id_prefix(self) -> &'static str {
        match self {
            Endpoint::Completions => "cmpl",
            Endpoint::Chat => "chatcmpl",
        }
    }

    fn object(self, stream: bool) -> &'static str {
        match (self, stream) {
            (Endpoint::Completions, _) => "text_completion",
            (Endpoint::Chat, false) => "chat.completion",
            (Endpoint::Chat, true) => "chat.completion.chunk",
        }
    }
}

/// A token's text for logprobs: its own decoding (special tokens kept), or `token_id:N`
/// without a tokenizer.
fn token_text(state: &AppState, id: u32) -> String {
    match &state.tokenizer {
        Some(t) => t.decode(&[id], false).unwrap_or_default(),
        None => format!("token_id:{id}"),
    }
}

/// Logprobs of `tokens` (with the text offsets, in characters, of each token's text) in the
/// endpoint's shape.
fn logprobs_json(
    state: &AppState,
    endpoint: Endpoint,
    text: &str,
    items: &[(u32, &TokenLogprobs, usize)],
) -> Value {
    match endpoint {
        Endpoint::Completions => {
            let tokens: Vec<String> = items.iter().map(|i| token_text(state, i.0)).collect();
            let token_logprobs: Vec<f32> = items.iter().map(|i| i.1.logprob).collect();
            let top: Vec<Value> = items
                .iter()
                .map(|i| {
                    let m: serde_json::Map<String, Value> =
                        i.1.top
                            .iter()
                            .map(|&(t, lp)| (token_text(state, t), json!(lp)))
                            .collect();
                    Value::Object(m)
                })
                .collect();
            let offsets: Vec<usize> = items
                .iter()
                .map(|i| text.get(..i.2).unwrap_or(text).chars().count())
                .collect();
            json!({"tokens": tokens, "token_logprobs": token_logprobs,
                   "top_logprobs": top, "text_offset": offsets})
        }
        Endpoint::Chat => {
            let entry = |t: u32, lp: f32| {
                let s = token_text(state, t);
                json!({"token": s, "logprob": lp, "bytes": s.as_bytes()})
            };
            let content: Vec<Value> = items
                .iter()
                .map(|i| {
                    let mut e = entry(i.0, i.1.logprob);
                    e["top_logprobs"] = i.1.top.iter().map(|&(t, lp)| entry(t, lp)).collect();
                    e
                })
                .collect();
            json!({ "content": content })
        }
    }
}

/// The `choices[i]` of a whole response.
fn choice_json(state: &AppState, endpoint: Endpoint, index: usize, s: &Sample) -> Value {
    let finish = finish_name(s.finish.as_ref().unwrap_or(&FinishReason::Aborted));
    let logprobs = match s.logprobs.is_empty() {
        true => Value::Null,
        false => {
            let items: Vec<_> = s
                .tokens
                .iter()
                .zip(&s.logprobs)
                .zip(&s.offsets)
                .map(|((&t, lp), &o)| (t, lp, o))
                .collect();
            logprobs_json(state, endpoint, &s.text, &items)
        }
    };
    match endpoint {
        Endpoint::Completions => json!({"index": index, "text": s.text, "token_ids": s.tokens,
                                        "logprobs": logprobs, "finish_reason": finish}),
        Endpoint::Chat => json!({"index": index,
                                 "message": {"role": "assistant", "content": s.text},
                                 "token_ids": s.tokens, "logprobs": logprobs,
                                 "finish_reason": finish}),
    }
}

fn usage(g: &Generation) -> Value {
    let (p, c) = (g.prompt_tokens, g.completion_tokens());
    json!({"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c})
}

/// Submits `prompts` under `plan` and answers as `endpoint`; a request over the
/// [`super::Limits`] is refused before anything is queued.
pub async fn respond(
    state: Arc<AppState>,
    endpoint: Endpoint,
    plan: Plan,
    prompts: Vec<Vec<u32>>,
) -> Response {
    let seqs = prompts.len().saturating_mul(plan.request.n);
    let max = state.limits.max_request_seqs;
    if seqs > max {
        return ApiError::bad(format!(
            "{} prompt(s) × n = {} is {seqs} sequences; this server takes at most {max} per \
             request (--max-request-seqs)",
            prompts.len(),
            plan.request.n
        ))
        .into_response();
    }
    let waiting = state.engine.snapshot().waiting;
    if waiting > state.limits.max_queued_seqs {
        return overloaded(format!(
            "the server is busy: {waiting} sequences are waiting (at most {} queued, \
             --max-queued-seqs); retry later",
            state.limits.max_queued_seqs
        ));
    }
    let mut requests = Vec::with_capacity(prompts.len());
    for p in prompts {
        match plan.request_for(&state, p) {
            Ok(r) => requests.push(r),
            Err(e) => return e.into_response(),
        }
    }
    let prompt_tokens = requests.iter().map(|r| r.prompt.len()).sum();
    let guard = state.metrics.start_request();
    let mut tickets = Vec::with_capacity(requests.len());
    for r in requests {
        match state.engine.submit(r).await {
            Ok(t) => tickets.push(t),
            Err(e) => return ApiError::bad(e.to_string()).into_response(),
        }
    }
    let mut gen = Generation::new(
        tickets,
        plan.request.n,
        prompt_tokens,
        plan.stops.clone(),
        plan.stream,
        state.tokenizer.clone(),
        Arc::clone(&state.metrics),
    );
    let id = format!(
        "{}-{}",
        endpoint.id_prefix(),
        NEXT_ID.fetch_add(1, Ordering::Relaxed)
    );
    let (created, model) = (now(), state.config.model_name.clone());
    if !plan.stream {
        gen.run().await;
        drop(guard);
        let choices: Vec<Value> = gen
            .samples
            .iter()
            .enumerate()
            .map(|(i, s)| choice_json(&state, endpoint, i, s))
            .collect();
        return Json(
            json!({"id": id, "object": endpoint.object(false), "created": created,
                           "model": model, "choices": choices, "usage": usage(&gen)}),
        )
        .into_response();
    }
    let head =
        json!({"id": id, "object": endpoint.object(true), "created": created, "model": model});
    let chunk = move |choices: Value, usage: Option<Value>| {
        let mut c = head.clone();
        c["choices"] = choices;
        if let Some(u) = usage {
            c["usage"] = u;
        }
        SseEvent::default().data(c.to_string())
    };
    // Chat streams open each choice with the assistant role.
    let opening: Vec<SseEvent> = match endpoint {
        Endpoint::Chat => (0..gen.samples.len())
            .map(|i| {
                let c = json!([{"index": i, "delta": {"role": "assistant", "content": ""},
                                "logprobs": null, "finish_reason": null}]);
                chunk(c, None)
            })
            .collect(),
        Endpoint::Completions => Vec::new(),
    };
    let include_usage = plan.include_usage;
    let body =
        futures_util::stream::unfold(Some((gen, guard, state, chunk)), move |st| async move {
            let (mut gen, guard, state, chunk) = st?;
            match gen.next().await {
                Some(u) => {
                    let ev = chunk(json!([update_json(&state, endpoint, &gen, &u)]), None);
                    Some((vec![ev], Some((gen, guard, state, chunk))))
                }
                None => {
                    let mut tail = Vec::new();
                    if include_usage {
                        tail.push(chunk(json!([]), Some(usage(&gen))));
                    }
                    tail.push(SseEvent::default().data("[DONE]"));
                    drop(guard);
                    Some((tail, None))
                }
            }
        });
    let opening = futures_util::stream::iter(opening.into_iter().map(Ok::<_, Infallible>));
    let events = futures_util::StreamExt::flat_map(body, |evs| {
        futures_util::stream::iter(evs.into_iter().map(Ok::<_, Infallible>))
    });
    Sse::new(futures_util::StreamExt::chain(opening, events)).into_response()
}

/// One streamed choice update in the endpoint's shape.
fn update_json(state: &AppState, endpoint: Endpoint, gen: &Generation, u: &Update) -> Value {
    let logprobs = match (&u.logprobs, u.token) {
        (Some(lp), Some(t)) => {
            let s = &gen.samples[u.choice];
            let offset = s.offsets.last().copied().unwrap_or(0);
            logprobs_json(state, endpoint, &s.text, &[(t, lp, offset)])
        }
        _ => Value::Null,
    };
    let ids: Vec<u32> = u.token.into_iter().collect();
    match endpoint {
        Endpoint::Completions => json!({"index": u.choice, "text": u.text, "token_ids": ids,
                                        "logprobs": logprobs, "finish_reason": u.finish}),
        Endpoint::Chat => {
            let delta = match u.text.is_empty() && u.finish.is_some() {
                true => json!({}),
                false => json!({"content": u.text}),
            };
            json!({"index": u.choice, "delta": delta, "token_ids": ids,
                   "logprobs": logprobs, "finish_reason": u.finish})
        }
    }
}
