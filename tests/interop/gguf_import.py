"""`compress convert --from-gguf` against transformers' own GGUF loader.

For each GGUF file given: transformers loads it (`from_pretrained(..., gguf_file=...)`, which
dequantizes with gguf-py and un-permutes q/k itself) and we compare, with what compress wrote
for the same file:
  * every tensor of the state dict (max |diff| <= 1e-6, fp32);
  * the logits on IDS: transformers on the GGUF vs compress eval's --logits-out of our dir
    (max |diff| <= 1e-4 relative to the largest logit, and the same argmax everywhere);
  * config fields that shape the model;
  * the tokenizers encode TEXT to the same ids (when the GGUF has a vocabulary).
Prints one line per file; exit status 1 when one fails.

Usage: python tests/interop/gguf_import.py IDS_JSON TEXT GGUF:IMPORTED_DIR:COMPRESS_LOGITS_NPY ...
"""

import json
import os
import sys

import numpy as np
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
from safetensors.torch import load_file

CONFIG_KEYS = ["hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
               "num_key_value_heads", "vocab_size", "max_position_embeddings", "tie_word_embeddings",
               "bos_token_id", "eos_token_id"]


def ours(dir_):
    out = {}
    for f in sorted(os.listdir(dir_)):
        if f.endswith(".safetensors"):
            out.update(load_file(os.path.join(dir_, f)))
    return out


def check(gguf, imported, logits_npy, ids, text):
    folder, name = os.path.split(gguf)
    ref = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    ref.eval()
    problems = []
    sd = {k: v for k, v in ref.state_dict().items()}
    mine = ours(imported)
    if ref.config.tie_word_embeddings:
        sd.pop("lm_head.weight", None)
    if set(sd) != set(mine):
        problems.append(f"tensor names differ: {sorted(set(sd) ^ set(mine))[:6]}")
    worst = max((float((sd[k].float() - mine[k].float()).abs().max()), k)
                for k in set(sd) & set(mine))
    if worst[0] > 1e-6:
        problems.append(f"tensor {worst[1]} differs by {worst[0]:.2e}")
    cfg = json.load(open(os.path.join(imported, "config.json")))
    theirs = AutoConfig.from_pretrained(folder, gguf_file=name)
    for k in CONFIG_KEYS:
        a, b = cfg.get(k), getattr(theirs, k, None)
        if a != b and not (k == "eos_token_id" and b in (a, [a])):
            problems.append(f"config {k}: ours {a}, transformers {b}")
    with torch.no_grad():
        # compress eval scores ids[1:], so its logits are those of ids[:-1].
        want = ref(torch.tensor([ids[:-1]])).logits[0].float().numpy()
    got = np.load(logits_npy).reshape(want.shape)
    diff = float(np.abs(got - want).max())
    scale = float(np.abs(want).max())
    agree = float((got.argmax(-1) == want.argmax(-1)).mean())
    if diff > 1e-4 * max(scale, 1.0) or agree < 1.0:
        problems.append(f"logits differ by {diff:.2e} (scale {scale:.1f}), argmax agreement {agree:.0%}")
    tok_note = "no tokenizer"
    if os.path.exists(os.path.join(imported, "tokenizer.json")):
        theirs_tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        mine_tok = AutoTokenizer.from_pretrained(imported)
        a, b = mine_tok(text)["input_ids"], theirs_tok(text)["input_ids"]
        tok_note = f"tokenizers agree on {len(a)} ids" if a == b else "tokenizers differ"
        if a != b:
            first = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
            problems.append(f"tokenizers differ at id {first}: ours {a[first:first + 5]}, "
                            f"transformers {b[first:first + 5]}")
    status = "ok" if not problems else "FAIL: " + "; ".join(problems)
    print(f"{name}: max tensor diff {worst[0]:.1e}, max logit diff {diff:.1e}, {tok_note}: {status}")
    return not problems


def main():
    ids = json.load(open(sys.argv[1]))
    ids = ids[0] if ids and isinstance(ids[0], list) else ids
    text = open(sys.argv[2]).read()[:2000]
    ok = True
    for spec in sys.argv[3:]:
        gguf, imported, logits = spec.split(":")
        ok &= check(gguf, imported, logits, ids, text)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
