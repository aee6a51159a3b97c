"""transformers loads a pack-quantized dir written by `compress quantize` and its logits match
`compress eval --logits-out` on the same dir.

Usage: python tests/interop/hf_load_packed.py MODEL_DIR IDS_JSON LOGITS_NPY [TOL]
IDS_JSON is the `[[ids...]]` file given to `compress eval`; LOGITS_NPY its `--logits-out`
(logits of positions 0..len-2). Prints one line and `1 passed, 0 failed`; exits 1 on mismatch.
"""
import json
import sys

import numpy as np
import torch
from transformers import AutoModelForCausalLM


def main() -> int:
    model_dir, ids_file, npy = sys.argv[1:4]
    tol = float(sys.argv[4]) if len(sys.argv) > 4 else 1e-3
    ids = json.load(open(ids_file))[0]
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        theirs = model(torch.tensor([ids[:-1]])).logits[0].float().numpy()
    ours = np.load(npy)
    if theirs.shape != ours.shape:
        print(f"FAIL shapes differ: transformers {theirs.shape}, compress {ours.shape}")
        print("0 passed, 1 failed")
        return 1
    diff = float(np.abs(theirs - ours).max())
    ok = diff < tol
    print(f"{'PASS' if ok else 'FAIL'} transformers vs compress logits on {model_dir}: max abs diff {diff:.3e} (tol {tol})")
    print(f"{int(ok)} passed, {int(not ok)} failed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
