"""GGUF import's rebuilt tokenizers against llama.cpp's tokenizer test vectors.

llama.cpp ships vocabulary-only GGUF files (`models/ggml-vocab-NAME.gguf`) with test strings
(`.inp`, separated by `\\n__ggml_vocab_test__\\n`) and the ids the original Hugging Face tokenizer
gives them without special tokens (`.out`, one line each). For each NAME, the `gguf_tokenizer`
example writes the tokenizer.json GGUF import would, the `tokenizers` library encodes every string,
and the ids must equal the `.out` line. Exit status 1 when a NAME in --require fails.

Usage: python tests/interop/gguf_vocab.py GGUF_TOKENIZER_BIN LLAMA_CPP_MODELS_DIR OUT_DIR
           --require llama-spm,llama-bpe,qwen2,gpt-2 [--also NAME,...]
"""

import argparse
import os
import subprocess
import sys

from tokenizers import Tokenizer

SEP = "\n__ggml_vocab_test__\n"


def check(bin_, models, out, name):
    gguf = os.path.join(models, f"ggml-vocab-{name}.gguf")
    dst = os.path.join(out, name)
    run = subprocess.run([bin_, gguf, dst], capture_output=True, text=True)
    if run.returncode != 0:
        return 0, 0, f"import refused: {run.stderr.strip()}"
    tok = Tokenizer.from_file(os.path.join(dst, "tokenizer.json"))
    inputs = open(gguf + ".inp", encoding="utf-8").read().split(SEP)
    wants = open(gguf + ".out", encoding="utf-8").read().split("\n")
    bad = []
    for text, want in zip(inputs, wants):
        want = [int(x) for x in want.split()]
        got = tok.encode(text, add_special_tokens=False).ids
        if got != want:
            bad.append(f"{text[:30]!r}: got {got[:8]}, want {want[:8]}")
    return len(inputs), len(bad), "; ".join(bad[:2])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("bin")
    p.add_argument("models")
    p.add_argument("out")
    p.add_argument("--require", default="")
    p.add_argument("--also", default="")
    a = p.parse_args()
    required = [n for n in a.require.split(",") if n]
    ok = True
    for name in required + [n for n in a.also.split(",") if n]:
        n, nbad, detail = check(a.bin, a.models, a.out, name)
        status = "ok" if n and not nbad else f"{nbad} of {n} differ" if n else detail
        print(f"{name}: {n - nbad}/{n} strings tokenized as the original tokenizer: {status}"
              + (f" ({detail})" if nbad else ""))
        if name in required and (not n or nbad):
            ok = False
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
