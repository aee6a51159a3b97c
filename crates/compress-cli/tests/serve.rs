//! `compress serve` on the demo model, started on a free port: health and models, greedy
//! completions equal `compress generate`, streaming gives the same tokens and ends with
//! `data: [DONE]`, chat through the model's template, `n > 1`, stop strings, logprobs, prompt
//! lists, `/metrics`, bad requests get OpenAI-style 4xx errors, and the API key is enforced.

mod common;

use common::compress;
use common::http::{
    demo, http, json, metric, open_stream, post, request, sse, start, start_model, wait_idle,
};
use serde_json::json as j;

#[test]
fn completions_match_generate_and_stream() {
    let srv = start(&[]);
    assert_eq!(
        http(srv.port, "GET", "/health", "", None),
        (200, "ok".into())
    );
    let (st, body) = http(srv.port, "GET", "/v1/models", "", None);
    assert_eq!(st, 200);
    assert_eq!(json(&body)["data"][0]["id"], "demo");

    let prompt = "Call me Ishmael.";
    let want = json(&compress(&[
        "generate",
        "--model",
        &demo(),
        "--prompt",
        prompt,
        "--max-tokens",
        "12",
        "--json",
    ]));
    let req = format!(r#"{{"model":"demo","prompt":"{prompt}","max_tokens":12,"temperature":0}}"#);
    let (st, body) = http(srv.port, "POST", "/v1/completions", &req, None);
    assert_eq!(st, 200, "{body}");
    let r = json(&body);
    assert_eq!(r["choices"][0]["token_ids"], want["tokens"]);
    assert_eq!(r["choices"][0]["text"], want["text"]);
    assert_eq!(r["usage"]["completion_tokens"], 12);

    let req = format!(r#"{{"prompt":"{prompt}","max_tokens":12,"temperature":0,"stream":true}}"#);
    let (st, body) = http(srv.port, "POST", "/v1/completions", &req, None);
    assert_eq!(st, 200);
    let mut ids = Vec::new();
    let mut text = String::new();
    for v in sse(&body) {
        ids.extend(
            v["choices"][0]["token_ids"]
                .as_array()
                .unwrap()
                .iter()
                .cloned(),
        );
        text.push_str(v["choices"][0]["text"].as_str().unwrap());
    }
    assert_eq!(serde_json::Value::Array(ids), want["tokens"]);
    assert_eq!(text, want["text"].as_str().unwrap());
}

#[test]
fn bad_requests_get_openai_errors_and_the_key_is_enforced() {
    let srv = start(&["--api-key", "sekret"]);
    let p = srv.port;
    let (st, body) = http(p, "POST", "/v1/completions", r#"{"prompt":[1,2]}"#, None);
    assert_eq!(st, 401, "{body}");
    assert_eq!(json(&body)["error"]["type"], "authentication_error");
    assert_eq!(
        http(p, "GET", "/health", "", None).0,
        200,
        "health needs no key"
    );
    let long: Vec<String> = (0..600).map(|i| (i % 100).to_string()).collect();
    let long = format!(r#"{{"prompt":[{}]}}"#, long.join(","));
    for (body, status, needle) in [
        ("{bad", 400, "request body"),
        (r#"{"prompt":"x","max_tokens":0}"#, 400, "max_tokens"),
        (r#"{"prompt":"x","max_tokens":"ten"}"#, 400, "request body"),
        (r#"{"prompt":"x","frobnicate":1}"#, 400, "frobnicate"),
        (r#"{"prompt":[99999]}"#, 400, "vocabulary"),
        (r#"{"prompt":[]}"#, 400, "empty"),
        (r#"{"model":"other","prompt":"x"}"#, 404, "other"),
        (long.as_str(), 400, "context"),
        // Out of range values are quoted as sent, not as what an f32 made of them.
        (r#"{"prompt":"x","temperature":1e308}"#, 400, "got 1e308"),
        (r#"{"prompt":"x","top_p":-1e300}"#, 400, "got -1e300"),
    ] {
        let (st, resp) = http(p, "POST", "/v1/completions", body, Some("sekret"));
        assert_eq!(st, status, "{body}: {resp}");
        let msg = json(&resp)["error"]["message"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(msg.contains(needle), "{body}: {msg}");
    }
    let (st, body) = http(
        p,
        "POST",
        "/v1/completions",
        r#"{"prompt":[1,17],"max_tokens":2}"#,
        Some("sekret"),
    );
    assert_eq!(st, 200, "{body}");
    // Over the 1 MiB body limit: a 413 in the same error shape.
    let huge = format!(r#"{{"prompt":"{}"}}"#, "x".repeat(1_100_000));
    let (st, body) = http(p, "POST", "/v1/completions", &huge, Some("sekret"));
    assert_eq!(st, 413);
    assert_eq!(json(&body)["error"]["code"], "request_too_large");
}

/// Greedy text of `prompt` through the server, with `extra` fields.
fn complete(
    port: u16,
    prompt: &str,
    max_tokens: usize,
    extra: serde_json::Value,
) -> serde_json::Value {
    let mut body = j!({"prompt": prompt, "max_tokens": max_tokens, "temperature": 0});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    post(port, "/v1/completions", &body)
}

#[test]
fn chat_uses_the_template_and_matches_completions() {
    let srv = start(&[]);
    let p = srv.port;
    let messages = j!([{"role": "system", "content": "Be brief."},
                       {"role": "user", "content": [{"type": "text", "text": "Who is Ahab?"}]}]);
    // The rendered prompt, as the demo's template in tokenizer_config.json makes it.
    let want_text = "<s>Be brief.\n\nUser: Who is Ahab?\nAssistant:";
    let tok = post(p, "/tokenize", &j!({"messages": messages}));
    let ids = post(p, "/tokenize", &j!({"prompt": want_text}))["tokens"].clone();
    assert_eq!(tok["tokens"], ids);
    assert_eq!(ids[0], 1, "the template starts with bos");
    let back = post(p, "/detokenize", &j!({"tokens": ids}));
    assert_eq!(back["prompt"], want_text);

    let chat = post(
        p,
        "/v1/chat/completions",
        &j!({"messages": messages, "max_tokens": 10, "temperature": 0}),
    );
    let plain = post(
        p,
        "/v1/completions",
        &j!({"prompt": ids, "max_tokens": 10, "temperature": 0}),
    );
    assert_eq!(chat["object"], "chat.completion");
    let msg = &chat["choices"][0]["message"];
    assert_eq!(msg["role"], "assistant");
    assert_eq!(msg["content"], plain["choices"][0]["text"]);
    assert_eq!(chat["usage"]["prompt_tokens"], tok["count"]);

    let (st, body) = http(
        p,
        "POST",
        "/v1/chat/completions",
        &j!({"messages": messages, "max_tokens": 10, "temperature": 0, "stream": true,
             "stream_options": {"include_usage": true}})
        .to_string(),
        None,
    );
    assert_eq!(st, 200);
    let events = sse(&body);
    assert_eq!(events[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, msg["content"].as_str().unwrap());
    let last = events.last().unwrap();
    assert_eq!(last["choices"], j!([]));
    assert_eq!(last["usage"]["completion_tokens"], 10);

    let (st, body) = http(
        p,
        "POST",
        "/v1/chat/completions",
        &j!({"messages": [{"role": "tool", "content": "x"}]}).to_string(),
        None,
    );
    assert_eq!(st, 400);
    assert!(body.contains("not tool"), "{body}");

    // A model dir without a template: a 400 that says how to give one.
    let dir = std::env::temp_dir().join(format!("compress-serve-notmpl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        let _ = std::fs::remove_file(dir.join(f));
        std::os::unix::fs::symlink(std::path::Path::new(&demo()).join(f), dir.join(f)).unwrap();
    }
    let bare = start_model(dir.to_str().unwrap(), &["--kv-blocks", "64"]);
    let (st, body) = http(
        bare.port,
        "POST",
        "/v1/chat/completions",
        &j!({"messages": messages}).to_string(),
        None,
    );
    assert_eq!(st, 400);
    assert!(body.contains("--chat-template"), "{body}");
    drop(bare);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn n_samples_stop_strings_logprobs_and_prompt_lists() {
    let srv = start(&[]);
    let p = srv.port;
    let prompt = "It was the best of times,";
    let base = complete(p, prompt, 24, j!({}));
    let full = base["choices"][0]["text"].as_str().unwrap().to_string();

    // n = 3 greedy: three equal choices; usage counts all their tokens.
    let three = complete(p, prompt, 24, j!({"n": 3}));
    let choices = three["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 3);
    for (i, c) in choices.iter().enumerate() {
        assert_eq!(c["index"], i);
        assert_eq!(c["text"], full);
    }
    assert_eq!(three["usage"]["completion_tokens"], 72);
    // n = 3 sampled with a seed: reproducible, and the samples differ.
    let sampled = |seed: u64| {
        let r = post(
            p,
            "/v1/completions",
            &j!({"prompt": prompt, "max_tokens": 16, "temperature": 1.0, "n": 3, "seed": seed}),
        );
        let texts: Vec<String> = r["choices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["text"].as_str().unwrap().to_string())
            .collect();
        texts
    };
    let a = sampled(7);
    assert_eq!(a, sampled(7));
    assert!(a[0] != a[1] || a[1] != a[2], "{a:?}");

    // A stop string from the middle of the greedy text: the text ends just before it.
    let chars: Vec<char> = full.chars().collect();
    let stop: String = chars[chars.len() / 2..chars.len() / 2 + 3].iter().collect();
    let cut = &full[..full.find(&stop).unwrap()];
    let r = complete(p, prompt, 24, j!({"stop": [stop.clone(), "never-there"]}));
    assert_eq!(r["choices"][0]["text"], cut, "stop {stop:?}");
    assert_eq!(r["choices"][0]["finish_reason"], "stop");
    let (st, body) = http(
        p,
        "POST",
        "/v1/completions",
        &j!({"prompt": prompt, "max_tokens": 24, "temperature": 0, "stop": stop, "stream": true})
            .to_string(),
        None,
    );
    assert_eq!(st, 200);
    let events = sse(&body);
    let text: String = events
        .iter()
        .map(|e| e["choices"][0]["text"].as_str().unwrap())
        .collect();
    assert_eq!(text, cut);
    assert_eq!(
        events.last().unwrap()["choices"][0]["finish_reason"],
        "stop"
    );

    // Logprobs: one per token, ≤ 0; greedy tokens are the most likely alternative.
    let r = complete(p, prompt, 8, j!({"logprobs": 3}));
    let lp = &r["choices"][0]["logprobs"];
    let values = lp["token_logprobs"].as_array().unwrap();
    assert_eq!(values.len(), 8);
    for (i, v) in values.iter().enumerate() {
        let v = v.as_f64().unwrap();
        assert!(v <= 0.0);
        let top = lp["top_logprobs"][i].as_object().unwrap();
        assert!(!top.is_empty() && top.len() <= 3);
        let best = top
            .values()
            .map(|x| x.as_f64().unwrap())
            .fold(f64::MIN, f64::max);
        assert!((best - v).abs() < 1e-5, "token {i}: {v} vs best {best}");
        assert!(lp["tokens"][i].as_str().is_some());
    }
    let chat = post(
        p,
        "/v1/chat/completions",
        &j!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4, "temperature": 0,
             "logprobs": true, "top_logprobs": 2}),
    );
    let content = chat["choices"][0]["logprobs"]["content"]
        .as_array()
        .unwrap();
    assert_eq!(content.len(), 4);
    assert_eq!(content[0]["top_logprobs"].as_array().unwrap().len(), 2);

    // A list of prompts with n = 2: choice 2·i + s belongs to prompt i.
    let ids = post(p, "/tokenize", &j!({"prompt": prompt}))["tokens"].clone();
    let r = post(
        p,
        "/v1/completions",
        &j!({"prompt": [ids, [1, 40, 41]], "max_tokens": 24, "temperature": 0, "n": 2}),
    );
    let choices = r["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 4);
    assert_eq!(choices[0]["text"], full);
    assert_eq!(choices[1]["text"], full);
    assert_eq!(choices[2]["text"], choices[3]["text"]);
    let two = post(
        p,
        "/v1/completions",
        &j!({"prompt": [prompt, prompt], "max_tokens": 24, "temperature": 0}),
    );
    assert_eq!(two["choices"][1]["text"], full);

    // The counters saw all of it, and nothing holds KV blocks once idle.
    assert!(metric(p, "compress_generation_tokens_total") >= 200.0);
    assert!(metric(p, "compress_time_to_first_token_seconds_count") >= 10.0);
    wait_idle(p);
}

#[test]
fn more_work_than_kv_blocks_preempts_and_a_disconnect_frees_blocks() {
    // 12 blocks of 16 tokens: 8 concurrent 60-token requests cannot all fit.
    let srv = start(&["--kv-blocks", "12", "--max-seqs", "8"]);
    let p = srv.port;
    let threads: Vec<_> = (0..8)
        .map(|i| {
            std::thread::spawn(move || {
                let body = j!({"prompt": [1, 40 + i, 41, 42], "max_tokens": 60, "temperature": 0});
                post(p, "/v1/completions", &body)
            })
        })
        .collect();
    for t in threads {
        let r = t.join().unwrap();
        assert_eq!(r["usage"]["completion_tokens"], 60, "{r}");
    }
    assert!(metric(p, "compress_num_preemptions_total") > 0.0);
    wait_idle(p);
    // Chat without max_tokens: up to what the 192-token cache holds, not the 512 context.
    let r = post(
        p,
        "/v1/chat/completions",
        &j!({"messages": [{"role": "user", "content": "Hi"}], "temperature": 0, "ignore_eos": true}),
    );
    assert_eq!(r["usage"]["total_tokens"], 192, "{r}");

    // A streaming client that goes away: its request is aborted and its blocks freed. The
    // server notices at its next write, so on a loaded machine the engine can finish all 150
    // tokens first (a "length" finish): up to 3 tries for the abort; blocks are freed every time.
    let aborts = |p: u16| {
        metric_labeled(
            p,
            "compress_request_success_total{finished_reason=\"abort\"}",
        )
    };
    for _try in 0..3 {
        let body = j!({"prompt": [1, 40], "max_tokens": 150, "temperature": 0, "stream": true});
        drop(open_stream(p, &body));
        wait_idle(p);
        assert_eq!(metric(p, "compress_kv_blocks_used"), 0.0);
        if aborts(p) > 0.0 {
            break;
        }
    }
    let (_, text) = http(p, "GET", "/metrics", "", None);
    assert!(aborts(p) >= 1.0, "no disconnect was aborted: {text}");
}

/// The value of the metric line that starts with `name` (labels included), 0 when absent.
fn metric_labeled(p: u16, name: &str) -> f64 {
    let (_, text) = http(p, "GET", "/metrics", "", None);
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn the_bearer_scheme_is_case_insensitive() {
    let srv = start(&["--api-key", "sekret"]);
    let body = r#"{"prompt":[1,17],"max_tokens":1}"#;
    for auth in ["Bearer sekret", "bearer sekret", "BEARER  sekret"] {
        let headers = [
            ("Content-Type", "application/json"),
            ("Authorization", auth),
        ];
        let (st, _, resp) = request(srv.port, "POST", "/v1/completions", &headers, body);
        assert_eq!(st, 200, "{auth}: {resp}");
    }
    for auth in ["Basic sekret", "bearer wrong", "bearersekret"] {
        let headers = [
            ("Content-Type", "application/json"),
            ("Authorization", auth),
        ];
        let (st, _, _) = request(srv.port, "POST", "/v1/completions", &headers, body);
        assert_eq!(st, 401, "{auth}");
    }
}

#[test]
fn json_routes_refuse_other_content_types() {
    let srv = start(&[]);
    let body = r#"{"prompt":[1,17],"max_tokens":1}"#;
    for ct in [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON",
    ] {
        let (st, _, resp) = request(
            srv.port,
            "POST",
            "/v1/completions",
            &[("Content-Type", ct)],
            body,
        );
        assert_eq!(st, 200, "{ct}: {resp}");
    }
    for (path, ct) in [
        ("/v1/completions", Some("text/plain")),
        (
            "/v1/chat/completions",
            Some("application/x-www-form-urlencoded"),
        ),
        ("/tokenize", Some("application/jsonx")),
        ("/v1/completions", None),
    ] {
        let headers: Vec<(&str, &str)> = ct.map(|c| ("Content-Type", c)).into_iter().collect();
        let (st, _, resp) = request(srv.port, "POST", path, &headers, body);
        assert_eq!(st, 415, "{path} {ct:?}: {resp}");
        let e = &json(&resp)["error"];
        assert_eq!(e["code"], "unsupported_media_type");
        let msg = e["message"].as_str().unwrap();
        assert!(msg.contains(ct.unwrap_or("no Content-Type")), "{msg}");
    }
}

#[test]
fn max_tokens_past_the_context_is_refused_not_cut() {
    let srv = start(&[]);
    let p = srv.port;
    let ids: Vec<u32> = (0..500).map(|i| 40 + i % 100).collect();
    for (prompt, max_tokens) in [(vec![1u32, 17], 1_000_000_000_000u64), (ids.clone(), 13)] {
        let body = j!({"prompt": prompt, "max_tokens": max_tokens}).to_string();
        let (st, resp) = http(p, "POST", "/v1/completions", &body, None);
        assert_eq!(st, 400, "{resp}");
        let msg = json(&resp)["error"]["message"]
            .as_str()
            .unwrap()
            .to_string();
        let want = format!(
            "({} in the prompt, {max_tokens} in the completion)",
            prompt.len()
        );
        assert!(msg.starts_with("max_tokens:"), "{msg}");
        assert!(
            msg.contains("maximum context length is 512 tokens") && msg.contains(&want),
            "{msg}"
        );
    }
    let chat = j!({"messages": [{"role": "user", "content": "Hi"}], "max_completion_tokens": 512});
    let (st, resp) = http(p, "POST", "/v1/chat/completions", &chat.to_string(), None);
    assert_eq!(st, 400, "{resp}");
    assert!(resp.contains("in the completion"), "{resp}");
    // Exactly up to the context is fine, and runs to its end.
    let r = post(
        p,
        "/v1/completions",
        &j!({"prompt": ids, "max_tokens": 12, "temperature": 0, "ignore_eos": true}),
    );
    assert_eq!(r["usage"]["completion_tokens"], 12, "{r}");
}

#[test]
fn request_cost_is_bounded_before_anything_is_queued() {
    // The hostile request: 1000 prompts × n = 128 would start 128,000 sequences.
    let srv = start(&[]);
    let prompts = vec!["hi"; 1000];
    let body = j!({"prompt": prompts, "n": 128, "max_tokens": 1}).to_string();
    let (st, resp) = http(srv.port, "POST", "/v1/completions", &body, None);
    assert_eq!(st, 400, "{resp}");
    let msg = json(&resp)["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("128000 sequences") && msg.contains("at most 256"),
        "{msg}"
    );
    assert_eq!(metric(srv.port, "compress_http_requests_total"), 0.0);
    drop(srv);

    // One sequence runs at a time; more than 2 waiting is a 503 with Retry-After.
    let srv = start(&[
        "--max-request-seqs",
        "6",
        "--max-seqs",
        "1",
        "--max-queued-seqs",
        "2",
    ]);
    let p = srv.port;
    let (st, resp) = http(
        p,
        "POST",
        "/v1/completions",
        r#"{"prompt":[[1],[2],[3]],"n":3}"#,
        None,
    );
    assert_eq!(st, 400, "{resp}");
    assert!(
        resp.contains("9 sequences") && resp.contains("--max-request-seqs"),
        "{resp}"
    );
    // Six long sequences, streamed: one runs, five wait.
    let body = j!({"prompt": [[1, 40], [1, 41], [1, 42], [1, 43], [1, 44], [1, 45]],
                   "max_tokens": 500, "ignore_eos": true, "stream": true});
    let s = open_stream(p, &body);
    let t0 = std::time::Instant::now();
    while metric(p, "compress_num_requests_waiting") < 4.0 {
        assert!(t0.elapsed().as_secs() < 20, "nothing waits");
    }
    let small = r#"{"prompt":[1,17],"max_tokens":1}"#;
    let (st, head, resp) = request(
        p,
        "POST",
        "/v1/completions",
        &[("Content-Type", "application/json")],
        small,
    );
    assert_eq!(st, 503, "{resp}");
    assert!(head.contains("retry-after: 1"), "{head}");
    assert_eq!(json(&resp)["error"]["code"], "server_overloaded");
    assert!(resp.contains("--max-queued-seqs"), "{resp}");
    // The stream's client goes away: the queue empties and requests are served again.
    drop(s);
    wait_idle(p);
    let (st, resp) = http(p, "POST", "/v1/completions", small, None);
    assert_eq!(st, 200, "{resp}");
}
