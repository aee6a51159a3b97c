#!/usr/bin/env python3
"""PyTorch eager baseline for one training step of the `tiny` config (compare with the Rust trainer).

    .venv/bin/python tests/reference/train_step_torch.py [--threads 2] [--steps 10] [--warmup 3] [--eval]

Model: LlamaForCausalLM(vocab 4096, hidden 256, intermediate 704, layers 4, heads 8, kv heads 4,
head_dim 32, max_position_embeddings 512, rope_theta 10000, rms_norm_eps 1e-5, untied), fp32, CPU,
random init (seed 0), random token ids (batch 8, seq 128), labels = input_ids (HF shifts inside).

Train step (timed): forward + loss.backward() + clip_grad_norm_(1.0) + AdamW(lr 1e-3, wd 0.1).step()
+ zero_grad(). `--eval`: forward-only under torch.inference_mode() (logits + loss), same shape.
Prints one JSON line.
"""
from __future__ import annotations

import argparse
import json
import time

import torch


def build_model(attn: str):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=4096,
        hidden_size=256,
        intermediate_size=704,
        num_hidden_layers=4,
        num_attention_heads=8,
        num_key_value_heads=4,
        head_dim=32,
        max_position_embeddings=512,
        rope_theta=10000.0,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
    )
    cfg._attn_implementation = attn
    return LlamaForCausalLM(cfg).to(torch.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--eval", action="store_true", help="time forward-only eval instead of a train step")
    ap.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"],
                    help="HF attention implementation (default sdpa, HF's default)")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    from transformers.utils import logging as hf_logging
    hf_logging.set_verbosity_error()

    torch.manual_seed(0)
    model = build_model(args.attn)
    n_params = sum(p.numel() for p in model.parameters())
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, model.config.vocab_size, (args.batch, args.seq), generator=g)
    tokens = args.batch * args.seq

    if args.eval:
        model.eval()

        def step():
            with torch.inference_mode():
                return model(input_ids=ids, labels=ids).loss
    else:
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)

        def step():
            loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            return loss.detach()

    first_loss = None
    for _ in range(args.warmup):
        l = step()
        first_loss = float(l) if first_loss is None else first_loss
    times, losses = [], []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        l = step()
        times.append(time.perf_counter() - t0)
        losses.append(float(l))
    ms = 1000.0 * sum(times) / len(times)
    out = {
        "impl": "pytorch-eager",
        "mode": "eval" if args.eval else "train",
        "ms_per_step": round(ms, 2),
        "ms_median": round(1000.0 * sorted(times)[len(times) // 2], 2),
        "ms_min": round(1000.0 * min(times), 2),
        "tokens_per_s": round(tokens / (ms / 1000.0), 1),
        "threads": args.threads,
        "batch": args.batch,
        "seq": args.seq,
        "steps": args.steps,
        "warmup": args.warmup,
        "params": n_params,
        "attn": args.attn,
        "loss_first": round(first_loss, 4) if first_loss is not None else None,
        "loss_last": round(losses[-1], 4),
        "torch": torch.__version__,
        "step_ms": [round(1000.0 * t, 1) for t in times],
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
