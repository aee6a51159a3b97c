#!/usr/bin/env python3
"""Reference fixtures from HF transformers (PyTorch, fp32, CPU) for the Rust tests.

Mode 1 (default): build small random-weight models from configs (no hub access), save each as an
HF dir (config.json + model.safetensors, fp32) under tests/fixtures/<name>/ and write
reference.safetensors next to it.

    .venv/bin/python tests/reference/make_fixtures.py [--out-root tests/fixtures] [--only NAME ...]

Mode 2: load an existing *local* HF dir and write only reference.safetensors into OUT_DIR.

    .venv/bin/python tests/reference/make_fixtures.py --model-dir DIR --out OUT_DIR \
        [--text FILE | --ids-file FILE] [--seq-len 24]

    --text FILE      input_ids = first line of FILE through DIR/tokenizer.json (tokenizers library,
                     special tokens added per the tokenizer's post-processor unless
                     --no-special-tokens), truncated to --seq-len.
    --ids-file FILE  input_ids = integers in FILE (whitespace/comma separated), truncated to --seq-len.
    (neither)        input_ids = seeded numpy RNG ids in [0, vocab_size).

reference.safetensors keys (all little-endian, row-major):
    input_ids      I64 [T]          (T = 24 by default)
    logits         F32 [T, vocab]   model(input_ids[None]).logits[0], fp32, eval mode, eager attention
    greedy_prompt  I64 [8]          input_ids[:8]
    greedy_tokens  I64 [32]         the 32 new tokens of greedy decoding from greedy_prompt; pure
                                    argmax, no EOS stopping and no logits processors (eos_token_id
                                    is ignored, so the sequence may contain the config's EOS id).
Greedy decoding is checked three ways: generate(use_cache=True), generate(use_cache=False) and a
manual full-recompute argmax loop must all agree.

Random init (all fixtures, torch.Generator seeded per fixture, in named_parameters() order):
embeddings N(0, 1.0); q_proj/k_proj weights N(0, 0.25) (attention scores O(1), softmax not
one-hot); other 2-D weights incl. an untied lm_head N(0, 0.7); q/k/v biases N(0, 0.1); RMSNorm
weights 1 + 0.1*N(0, 1). Chosen so greedy sequences are diverse, the top1-top2 logit margin along
the greedy path stays >= 0.05 (robust to fp32 reordering), and zeroing the Qwen2 biases or
dropping the llama3 rope scaling changes the logits by O(10).

Determinism: fixed seeds, torch.set_num_threads(1), deterministic algorithms; rerunning produces
byte-identical files (for the same torch/transformers versions, see requirements.txt).
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import save_file

SEQ_LEN = 24
PROMPT_LEN = 8
NEW_TOKENS = 32
IDS_SEED = 1234

REPO_ROOT = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------------------------
# Random models
# --------------------------------------------------------------------------------------------

def fixture_specs():
    from transformers import (LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM,
                              Qwen2Config, Qwen2ForCausalLM)

    return {
        # Qwen2: q/k/v bias (Qwen2 default), tied embeddings, large rope_theta.
        "qwen2_bias_tied": dict(
            seed=0,
            cls=Qwen2ForCausalLM,
            config=lambda: Qwen2Config(
                vocab_size=512,
                hidden_size=64,
                intermediate_size=172,
                num_hidden_layers=2,
                num_attention_heads=4,
                num_key_value_heads=2,
                tie_word_embeddings=True,
                rope_theta=1000000.0,
                rms_norm_eps=1e-6,
                max_position_embeddings=256,
                use_sliding_window=False,
                bos_token_id=1,
                eos_token_id=2,
            ),
        ),
        # Llama 3.x: GQA 8/2 heads, head_dim 8, untied, llama3 rope scaling.
        # original_max_position_embeddings=256 with head_dim 8 / theta 5e5 gives wavelengths
        # [6.3, 167, 4443, 118k]: one high-frequency pair kept, one in the smoothed band
        # (64 < 167 < 256), two divided by `factor` -> all three branches of the rewrite are used.
        "llama3_gqa_untied": dict(
            seed=1,
            cls=LlamaForCausalLM,
            config=lambda: LlamaConfig(
                vocab_size=512,
                hidden_size=64,
                intermediate_size=200,
                num_hidden_layers=2,
                num_attention_heads=8,
                num_key_value_heads=2,
                tie_word_embeddings=False,
                rope_theta=500000.0,
                rope_scaling={
                    "rope_type": "llama3",
                    "factor": 8.0,
                    "low_freq_factor": 1.0,
                    "high_freq_factor": 4.0,
                    "original_max_position_embeddings": 256,
                },
                rms_norm_eps=1e-5,
                max_position_embeddings=1024,
                bos_token_id=1,
                eos_token_id=2,
            ),
        ),
        # Mistral with explicit head_dim (32 * 4 heads = 128 != hidden 64), MQA (1 kv head).
        "mistral_headdim": dict(
            seed=2,
            cls=MistralForCausalLM,
            config=lambda: MistralConfig(
                vocab_size=384,
                hidden_size=64,
                intermediate_size=96,
                num_hidden_layers=2,
                num_attention_heads=4,
                num_key_value_heads=1,
                head_dim=32,
                tie_word_embeddings=False,
                sliding_window=None,
                rms_norm_eps=1e-5,
                max_position_embeddings=256,
                bos_token_id=1,
                eos_token_id=2,
            ),
        ),
    }


# Init: every model uses the same recipe (see module docstring).
EMBED_STD = 1.0     # token embeddings (and the tied lm_head)
LINEAR_STD = 0.7    # other 2-D weights (v/o/gate/up/down) and an untied lm_head
QK_STD = 0.25       # q_proj/k_proj weights: keeps attention scores O(1) (softmax not one-hot)
BIAS_STD = 0.1      # q/k/v biases (Qwen2) - nonzero so they matter
NORM_JITTER = 0.1   # RMSNorm weights = 1 + 0.1 * randn


@torch.no_grad()
def reinit_(model: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    emb = model.get_input_embeddings().weight
    # named_parameters() de-duplicates tied weights, so a tied lm_head is initialised once.
    for name, p in model.named_parameters():
        if p is emb:
            std, base = EMBED_STD, 0.0
        elif "norm" in name and p.ndim == 1:
            std, base = NORM_JITTER, 1.0
        elif name.endswith(".bias"):
            std, base = BIAS_STD, 0.0
        elif p.ndim == 2 and (name.endswith("q_proj.weight") or name.endswith("k_proj.weight")):
            std, base = QK_STD, 0.0
        elif p.ndim == 2:
            std, base = LINEAR_STD, 0.0
        else:
            raise RuntimeError(f"unexpected parameter {name} {tuple(p.shape)}")
        p.copy_(base + std * torch.randn(p.shape, generator=g, dtype=torch.float32))


# --------------------------------------------------------------------------------------------
# Reference computation
# --------------------------------------------------------------------------------------------

def seeded_ids(vocab_size: int, n: int, seed: int = IDS_SEED) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, vocab_size, size=n, dtype=np.int64)


@torch.no_grad()
def manual_greedy(model, prompt: torch.Tensor, n: int):
    """Full-recompute argmax loop (no KV cache). Returns (tokens, min top1-top2 margin)."""
    seq = prompt[None].clone()
    out, margins = [], []
    for _ in range(n):
        logits = model(seq, use_cache=False).logits[0, -1]
        top2 = torch.topk(logits, 2)
        margins.append(float(top2.values[0] - top2.values[1]))
        nxt = int(top2.indices[0])
        out.append(nxt)
        seq = torch.cat([seq, torch.tensor([[nxt]], dtype=seq.dtype)], dim=1)
    return np.array(out, dtype=np.int64), min(margins)


@torch.no_grad()
def hf_greedy(model, prompt: torch.Tensor, n: int, use_cache: bool) -> np.ndarray:
    from transformers import GenerationConfig

    gc = GenerationConfig(
        do_sample=False,
        num_beams=1,
        max_new_tokens=n,
        min_new_tokens=n,
        eos_token_id=None,   # never stop early; also keeps min_new_tokens from masking any id
        pad_token_id=0,
        bos_token_id=None,
        use_cache=use_cache,
    )
    # generate() fills fields left at None from model.generation_config (which carries the
    # config's eos_token_id); with an EOS id there, min_new_tokens would mask that id's logit.
    # Clear it on the model's own generation config too so decoding is a pure argmax.
    saved = model.generation_config
    model.generation_config = copy.deepcopy(saved)
    model.generation_config.eos_token_id = None
    model.generation_config.bos_token_id = None
    model.generation_config.pad_token_id = 0
    try:
        out = model.generate(prompt[None], attention_mask=torch.ones_like(prompt[None]),
                             generation_config=gc)
    finally:
        model.generation_config = saved
    if gc.eos_token_id is not None:
        raise RuntimeError("eos_token_id leaked into the generation config")
    return out[0, prompt.numel():].numpy().astype(np.int64)


@torch.no_grad()
def compute_reference(model, input_ids: np.ndarray) -> tuple[dict, dict]:
    model.eval()
    ids = torch.from_numpy(input_ids)
    logits = model(ids[None], use_cache=False).logits[0].float().numpy()
    prompt = ids[:PROMPT_LEN]
    g_cache = hf_greedy(model, prompt, NEW_TOKENS, use_cache=True)
    g_nocache = hf_greedy(model, prompt, NEW_TOKENS, use_cache=False)
    g_manual, margin = manual_greedy(model, prompt, NEW_TOKENS)
    if not (np.array_equal(g_cache, g_nocache) and np.array_equal(g_cache, g_manual)):
        raise SystemExit(f"greedy mismatch:\n cache   {g_cache}\n nocache {g_nocache}\n manual  {g_manual}")
    tensors = {
        "input_ids": np.ascontiguousarray(input_ids.astype(np.int64)),
        "logits": np.ascontiguousarray(logits.astype(np.float32)),
        "greedy_prompt": np.ascontiguousarray(prompt.numpy().astype(np.int64)),
        "greedy_tokens": np.ascontiguousarray(g_cache),
    }
    stats = {
        "logits_std": float(logits.std()),
        "logits_absmax": float(np.abs(logits).max()),
        "greedy_distinct": int(len(set(g_cache.tolist()))),
        "greedy_min_margin": margin,
    }
    eos = getattr(model.config, "eos_token_id", None)
    eos_ids = set(eos if isinstance(eos, (list, tuple)) else ([] if eos is None else [eos]))
    hits = sorted(eos_ids & set(g_cache.tolist()))
    if hits:
        print(f"  note: greedy_tokens contain the config's EOS id(s) {hits}; decoding ignores EOS")
    return tensors, stats


def write_reference(out_dir: Path, tensors: dict) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "reference.safetensors"
    save_file(tensors, str(path), metadata={"generator": "tests/reference/make_fixtures.py"})
    return path


def rope_keys(config_path: Path) -> dict:
    cfg = json.loads(config_path.read_text())
    return {k: cfg[k] for k in cfg if "rope" in k}


def dir_size(d: Path) -> int:
    return sum(f.stat().st_size for f in d.iterdir() if f.is_file())


def print_inv_freq(model, config) -> None:
    """Compare the model's rotary inv_freq with the unscaled default (theta from the config)."""
    rot = model.model.rotary_emb
    params = config.rope_parameters
    theta = params["rope_theta"]
    dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    plain = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float) / dim))
    scaled = rot.inv_freq.float()
    print(f"    rope_type={params.get('rope_type')} head_dim={dim} theta={theta}")
    print(f"    inv_freq unscaled: {[f'{v:.6e}' for v in plain.tolist()]}")
    print(f"    inv_freq model   : {[f'{v:.6e}' for v in scaled.tolist()]}")
    print(f"    wavelength       : {[f'{2 * math.pi / v:.1f}' for v in plain.tolist()]}")
    print(f"    ratio unscaled/model: {[f'{v:.4f}' for v in (plain / scaled).tolist()]}")
    return bool((~torch.isclose(plain, scaled)).any())


def build_fixtures(out_root: Path, only: list[str] | None) -> None:
    specs = fixture_specs()
    names = only or list(specs)
    summary = []
    for name in names:
        spec = specs[name]
        torch.manual_seed(spec["seed"])
        config = spec["config"]()
        config._attn_implementation = "eager"
        model = spec["cls"](config).to(torch.float32)
        reinit_(model, spec["seed"])
        model.eval()

        out = out_root / name
        out.mkdir(parents=True, exist_ok=True)
        for f in out.iterdir():
            if f.is_file():
                f.unlink()
        model.save_pretrained(str(out), safe_serialization=True)
        # Keep only config.json + model.safetensors (+ our reference).
        for f in out.iterdir():
            if f.name not in ("config.json", "model.safetensors"):
                f.unlink()

        # Reload from disk so the reference is computed from exactly what the Rust side loads.
        from transformers import AutoModelForCausalLM
        reloaded = AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32,
                                                        attn_implementation="eager")
        reloaded.eval()
        sd_a, sd_b = model.state_dict(), reloaded.state_dict()
        for k in sd_a:
            if not torch.equal(sd_a[k], sd_b[k]):
                raise SystemExit(f"{name}: reload mismatch at {k}")

        ids = seeded_ids(config.vocab_size, SEQ_LEN)
        tensors, stats = compute_reference(reloaded, ids)
        write_reference(out, tensors)

        print(f"== {name} ({spec['cls'].__name__})")
        if name == "llama3_gqa_untied":
            changed = print_inv_freq(reloaded, reloaded.config)
            if not changed:
                raise SystemExit("llama3 rope scaling did not change any frequency")
        elif name == "qwen2_bias_tied":
            b = reloaded.model.layers[0].self_attn.q_proj.bias
            print(f"    q_proj.bias present, |b|mean={b.abs().mean():.4f}; tied="
                  f"{reloaded.lm_head.weight.data_ptr() == reloaded.model.embed_tokens.weight.data_ptr()}")
        elif name == "mistral_headdim":
            print(f"    head_dim={reloaded.config.head_dim} heads={reloaded.config.num_attention_heads} "
                  f"hidden={reloaded.config.hidden_size} q_proj={tuple(reloaded.model.layers[0].self_attn.q_proj.weight.shape)}")
        print(f"    config rope keys: {rope_keys(out / 'config.json')}")
        print(f"    input_ids     : {tensors['input_ids'].tolist()}")
        print(f"    greedy_prompt : {tensors['greedy_prompt'].tolist()}")
        print(f"    greedy_tokens : {tensors['greedy_tokens'].tolist()}")
        print(f"    stats: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                          for k, v in stats.items()))
        if stats["greedy_distinct"] < 4:
            raise SystemExit(f"{name}: greedy sequence too repetitive")
        files = {f.name: f.stat().st_size for f in sorted(out.iterdir())}
        print(f"    files: {files}  total={dir_size(out)} B")
        summary.append((name, dir_size(out), stats))

    print("\nsummary:")
    for name, size, stats in summary:
        print(f"  {name:22s} {size / 1024:7.1f} KiB  distinct={stats['greedy_distinct']:2d}  "
              f"min_margin={stats['greedy_min_margin']:.4f}")


# --------------------------------------------------------------------------------------------
# Existing local model dir
# --------------------------------------------------------------------------------------------

def reference_for_dir(args) -> None:
    from transformers import AutoModelForCausalLM

    model_dir = Path(args.model_dir)
    if not (model_dir / "config.json").is_file():
        raise SystemExit(f"{model_dir}: no config.json (a local HF model dir is required)")
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32,
                                                 attn_implementation="eager",
                                                 local_files_only=True)
    model.eval()
    vocab = model.config.get_text_config().vocab_size if hasattr(model.config, "get_text_config") \
        else model.config.vocab_size

    if args.text and args.ids_file:
        raise SystemExit("--text and --ids-file are exclusive")
    if args.text:
        from tokenizers import Tokenizer
        tok_path = model_dir / "tokenizer.json"
        if not tok_path.is_file():
            raise SystemExit(f"{tok_path} not found (needed for --text)")
        tok = Tokenizer.from_file(str(tok_path))
        with open(args.text, encoding="utf-8") as fh:
            line = fh.readline().rstrip("\r\n")
        enc = tok.encode(line, add_special_tokens=not args.no_special_tokens)
        ids = np.array(enc.ids[: args.seq_len], dtype=np.int64)
        source = f"text {args.text!r} first line {line[:60]!r}"
    elif args.ids_file:
        raw = Path(args.ids_file).read_text().replace(",", " ").split()
        ids = np.array([int(x) for x in raw][: args.seq_len], dtype=np.int64)
        source = f"ids-file {args.ids_file!r}"
    else:
        ids = seeded_ids(vocab, args.seq_len)
        source = f"numpy default_rng({IDS_SEED})"
    if ids.size < PROMPT_LEN:
        raise SystemExit(f"need at least {PROMPT_LEN} input ids, got {ids.size}")
    if ids.min() < 0 or ids.max() >= vocab:
        raise SystemExit(f"input ids out of range for vocab {vocab}")

    tensors, stats = compute_reference(model, ids)
    path = write_reference(Path(args.out), tensors)
    print(f"model-dir {model_dir} ({type(model).__name__}, vocab {vocab}); input_ids from {source}")
    print(f"  input_ids     : {tensors['input_ids'].tolist()}")
    print(f"  greedy_prompt : {tensors['greedy_prompt'].tolist()}")
    print(f"  greedy_tokens : {tensors['greedy_tokens'].tolist()}")
    print("  stats: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                  for k, v in stats.items()))
    print(f"  wrote {path} ({path.stat().st_size} B)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out-root", default=str(REPO_ROOT / "tests" / "fixtures"),
                    help="where the random-model fixture dirs go (mode 1)")
    ap.add_argument("--only", nargs="*", help="subset of fixture names (mode 1)")
    ap.add_argument("--model-dir", help="existing local HF model dir (mode 2)")
    ap.add_argument("--out", help="output dir for reference.safetensors (mode 2)")
    ap.add_argument("--text", help="text file; its first line is tokenized with MODEL_DIR/tokenizer.json")
    ap.add_argument("--ids-file", help="file with integer token ids (whitespace/comma separated)")
    ap.add_argument("--no-special-tokens", action="store_true",
                    help="with --text: do not add the tokenizer's special tokens (e.g. BOS)")
    ap.add_argument("--seq-len", type=int, default=SEQ_LEN, help="T (mode 2; default 24)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (default 1: byte-identical reruns)")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging as hf_logging
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()

    if args.model_dir:
        if not args.out:
            raise SystemExit("--model-dir needs --out")
        reference_for_dir(args)
    else:
        if args.out or args.text or args.ids_file:
            raise SystemExit("--out/--text/--ids-file only apply with --model-dir")
        build_fixtures(Path(args.out_root), args.only)


if __name__ == "__main__":
    main()
