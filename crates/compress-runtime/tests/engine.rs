//! The continuous-batching engine on the demo model: batching does not change greedy outputs,
//! KV exhaustion preempts instead of failing, abort frees blocks, n > 1 forks, prefix caching.

use std::path::{Path, PathBuf};
use std::sync::mpsc::Receiver;
use std::sync::Arc;

use compress_runtime::engine::RequestId;
use compress_runtime::kernels::ActMode;
use compress_runtime::sampling::SamplingParams;
use compress_runtime::{Engine, EngineConfig, Event, FinishReason, Model, Request};

fn demo() -> Arc<Model> {
    let dir: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/models/demo");
    Arc::new(Model::load(&dir).unwrap())
}

/// Prompts of mixed lengths (2..=70 tokens), deterministic.
fn prompts(n: usize) -> Vec<Vec<u32>> {
    (0..n)
        .map(|i| {
            let len = 2 + (i * 37) % 69;
            (0..len)
                .map(|j| ((i * 131 + j * 17 + 5) % 4000) as u32 + 3)
                .collect()
        })
        .collect()
}

fn config(num_blocks: usize) -> EngineConfig {
    EngineConfig {
        act_mode: ActMode::F32,
        ..EngineConfig::with_blocks(num_blocks)
    }
}

/// Collects `rx` into per-index token lists and finish reasons.
fn collect(rx: &Receiver<Event>, n: usize) -> (Vec<Vec<u32>>, Vec<Option<FinishReason>>) {
    let mut tokens = vec![Vec::new(); n];
    let mut reasons = vec![None; n];
    for ev in rx.try_iter() {
        match ev {
            Event::Token { index, token, .. } => {
                assert!(reasons[index].is_none(), "token after finish");
                tokens[index].push(token);
            }
            Event::Finished { index, reason } => reasons[index] = Some(reason),
        }
    }
    (tokens, reasons)
}

fn alone(model: &Arc<Model>, prompt: &[u32], max_tokens: usize) -> Vec<u32> {
    let mut e = Engine::new(model.clone(), config(64)).unwrap();
    let (_, rx) = e
        .add_request(Request::greedy(prompt.to_vec(), max_tokens, vec![]))
        .unwrap();
    e.run_to_completion().unwrap();
    let (t, r) = collect(&rx, 1);
    assert_eq!(r[0], Some(FinishReason::Length));
    t.into_iter().next().unwrap()
}

#[test]
fn sixteen_concurrent_requests_equal_running_each_alone() {
    let model = demo();
    let ps = prompts(16);
    let max_tokens: Vec<usize> = (0..16).map(|i| 5 + (i * 7) % 23).collect();
    let mut e = Engine::new(
        model.clone(),
        EngineConfig {
            max_batched_tokens: 96,
            ..config(256)
        },
    )
    .unwrap();
    let rxs: Vec<Receiver<Event>> = ps
        .iter()
        .zip(&max_tokens)
        .map(|(p, &m)| {
            e.add_request(Request::greedy(p.clone(), m, vec![]))
                .unwrap()
                .1
        })
        .collect();
    e.run_to_completion().unwrap();
    assert!(
        e.stats().peak_running >= 8,
        "requests ran together: peak {}",
        e.stats().peak_running
    );
    for (i, rx) in rxs.iter().enumerate() {
        let (t, r) = collect(rx, 1);
        assert_eq!(r[0], Some(FinishReason::Length));
        assert_eq!(t[0], alone(&model, &ps[i], max_tokens[i]), "request {i}");
    }
    assert_eq!(e.blocks().num_used(), 0, "every block is returned");
}

#[test]
fn kv_exhaustion_preempts_and_every_request_finishes() {
    let model = demo();
    let ps = prompts(10);
    // 12 blocks = 192 token slots for 10 requests of up to ~70 + 40 tokens.
    let mut e = Engine::new(model.clone(), config(12)).unwrap();
    let rxs: Vec<Receiver<Event>> = ps
        .iter()
        .map(|p| {
            e.add_request(Request::greedy(p.clone(), 40, vec![]))
                .unwrap()
                .1
        })
        .collect();
    e.run_to_completion().unwrap();
    assert!(
        e.stats().preemptions > 0,
        "expected preemptions with 12 blocks"
    );
    for (i, rx) in rxs.iter().enumerate() {
        let (t, r) = collect(rx, 1);
        assert_eq!(r[0], Some(FinishReason::Length), "request {i}");
        assert_eq!(
            t[0],
            alone(&model, &ps[i], 40),
            "request {i} after preemption"
        );
    }
    assert_eq!(e.blocks().num_used(), 0);
    e.blocks().check_invariants().unwrap();
}

#[test]
fn a_request_that_can_never_fit_is_refused_up_front() {
    let mut e = Engine::new(demo(), config(4)).unwrap();
    let err = e
        .add_request(Request::greedy(vec![5; 60], 10, vec![]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("needs 5 KV blocks") && err.contains("has 4"),
        "{err}"
    );
    let err = e
        .add_request(Request::greedy(vec![], 10, vec![]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("empty"), "{err}");
    let err = e
        .add_request(Request::greedy(vec![5000], 1, vec![]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("outside the vocabulary"), "{err}");
}

#[test]
fn abort_frees_blocks_at_once() {
    let mut e = Engine::new(demo(), config(64)).unwrap();
    let (id, rx): (RequestId, _) = e
        .add_request(Request::greedy(prompts(3)[2].clone(), 50, vec![]))
        .unwrap();
    let (_, rx2) = e
        .add_request(Request::greedy(prompts(3)[1].clone(), 50, vec![]))
        .unwrap();
    for _ in 0..3 {
        e.step().unwrap();
    }
    let before = e.blocks().num_used();
    e.abort(id);
    assert!(e.blocks().num_used() < before, "abort returned no blocks");
    let (t, r) = collect(&rx, 1);
    assert_eq!(r[0], Some(FinishReason::Aborted));
    assert_eq!(
        t[0].len(),
        3,
        "one token per step (the prompt fits one step)"
    );
    e.run_to_completion().unwrap();
    assert_eq!(collect(&rx2, 1).1[0], Some(FinishReason::Length));
    assert_eq!(e.blocks().num_used(), 0);
}

#[test]
fn dropping_the_receiver_aborts_the_request() {
    let mut e = Engine::new(demo(), config(64)).unwrap();
    let (_, rx) = e
        .add_request(Request::greedy(vec![3, 4, 5], 50, vec![]))
        .unwrap();
    e.step().unwrap();
    drop(rx);
    e.step().unwrap();
    assert!(!e.has_work());
    assert_eq!(e.blocks().num_used(), 0);
}

#[test]
fn n_samples_fork_copy_on_write() {
    let model = demo();
    let prompt = prompts(4)[3].clone(); // not a multiple of 16: the last block is shared, then copied
    let mut e = Engine::new(model.clone(), config(64)).unwrap();
    let req = Request {
        n: 3,
        ..Request::greedy(prompt.clone(), 12, vec![])
    };
    let (_, rx) = e.add_request(req).unwrap();
    e.run_to_completion().unwrap();
    let (t, r) = collect(&rx, 3);
    let want = alone(&model, &prompt, 12);
    for i in 0..3 {
        assert_eq!(r[i], Some(FinishReason::Length));
        assert_eq!(t[i], want, "greedy sample {i}");
    }
    assert!(
        e.blocks().stats().cow_copies >= 2,
        "{:?}",
        e.blocks().stats()
    );

    // Sampled: the three streams differ, and a seed reproduces them.
    let run = |seed| {
        let mut e = Engine::new(model.clone(), config(64)).unwrap();
        let sampling = SamplingParams {
            temperature: 1.0,
            top_p: 1.0,
            seed,
        };
        let (_, rx) = e
            .add_request(Request {
                n: 3,
                sampling,
                ..Request::greedy(prompt.clone(), 12, vec![])
            })
            .unwrap();
        e.run_to_completion().unwrap();
        collect(&rx, 3).0
    };
    let a = run(11);
    assert_eq!(a, run(11));
    assert!(
        a[0] != a[1] || a[1] != a[2],
        "three sampled streams were identical: {a:?}"
    );
}

#[test]
fn stop_tokens_end_a_sequence_and_are_emitted() {
    let model = demo();
    let prompt = prompts(2)[1].clone();
    let free = alone(&model, &prompt, 10);
    let stop = free[4];
    let first = free.iter().position(|&t| t == stop).unwrap();
    let mut e = Engine::new(model, config(64)).unwrap();
    let (_, rx) = e
        .add_request(Request::greedy(prompt, 10, vec![stop]))
        .unwrap();
    e.run_to_completion().unwrap();
    let (t, r) = collect(&rx, 1);
    assert_eq!(r[0], Some(FinishReason::Stop));
    assert_eq!(t[0], free[..=first].to_vec());
}

#[test]
fn a_repeated_prompt_hits_the_prefix_cache() {
    let model = demo();
    let prompt: Vec<u32> = (0..50).map(|i| (i * 7 % 300) as u32 + 3).collect();
    let mut e = Engine::new(model.clone(), config(64)).unwrap();
    let (_, rx1) = e
        .add_request(Request::greedy(prompt.clone(), 8, vec![]))
        .unwrap();
    e.run_to_completion().unwrap();
    let (_, rx2) = e
        .add_request(Request::greedy(prompt.clone(), 8, vec![]))
        .unwrap();
    e.run_to_completion().unwrap();
    assert_eq!(
        e.stats().cached_prompt_tokens,
        48,
        "three full blocks of the 50-token prompt"
    );
    let a = collect(&rx1, 1).0;
    assert_eq!(a, collect(&rx2, 1).0);
    assert_eq!(a[0], alone(&model, &prompt, 8));
}

#[test]
fn logprobs_come_with_each_token_and_stop_sample_ends_one_sample() {
    let model = demo();
    let prompt = prompts(3)[2].clone();
    let mut e = Engine::new(model.clone(), config(64)).unwrap();
    let (id, rx) = e
        .add_request(Request {
            n: 2,
            logprobs: Some(3),
            ..Request::greedy(prompt.clone(), 10, vec![])
        })
        .unwrap();
    e.step().unwrap(); // prefill: the first token of each sample
    e.stop_sample(id, 1);
    e.run_to_completion().unwrap();
    let mut per = vec![Vec::new(); 2];
    let mut reasons = vec![None; 2];
    for ev in rx.try_iter() {
        match ev {
            Event::Token {
                index,
                token,
                logprobs,
            } => {
                let lp = logprobs.expect("logprobs were asked for");
                assert_eq!(lp.top.len(), 3);
                // Greedy: the token is the most likely one, and its logprob is that of top[0].
                assert_eq!(lp.top[0].0, token);
                assert!((lp.top[0].1 - lp.logprob).abs() < 1e-6 && lp.logprob <= 0.0);
                assert!(lp.top[0].1 >= lp.top[1].1 && lp.top[1].1 >= lp.top[2].1);
                per[index].push(token);
            }
            Event::Finished { index, reason } => reasons[index] = Some(reason),
        }
    }
    assert_eq!(per[0], alone(&model, &prompt, 10));
    assert_eq!(per[1].len(), 1, "sample 1 stopped after its first token");
    assert_eq!(
        reasons,
        [Some(FinishReason::Length), Some(FinishReason::Stop)]
    );
    assert_eq!(e.blocks().num_used(), 0);
}
