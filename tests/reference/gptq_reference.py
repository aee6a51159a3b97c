#!/usr/bin/env python3
"""Independent torch reference of GPTQ for one weight matrix, and its JSON fixture.

Regenerate (deterministic; CPU, float32, torch 2.9 from the repo venv):

    .venv/bin/python tests/reference/gptq_reference.py \
        [--out crates/compress-core/tests/fixtures/gptq/reference.json]

The Rust test `stages::quantize::gptq::tests::matches_torch_reference` reads the fixture and
checks that `gptq_quantize` picks the same codes and scales.

The algorithm follows the GPTQ paper's `fasterquant` and llm-compressor's `quantize_weight`,
written plainly with full-matrix torch ops (no shared code with the Rust side):

- H = 2/N Σ x xᵀ, accumulated over batches as H *= n/(n+t); H += 2/(n+t) XᵀX.
- Dead inputs (H[i,i] == 0): H[i,i] = 1, W[:, i] = 0.
- Per-tensor / per-channel parameters, and group parameters with act_order ("static groups",
  each column keeps its original group) come from W up front (after the dead-column step).
- act_order: perm = stable argsort of diag(H), descending; W columns and H permuted.
- damp = dampening_frac * mean(diag H); H += damp I; Hinv = cholesky(cholesky_inverse(
  cholesky(H)), upper=True).
- Blocks of block_size columns; in a block, column i: group parameters without act_order are
  computed when a group's first column is reached, from the current weights of the group
  (in-block error-updated columns, block-start values for columns right of the block);
  q = clamp(round(w/s) + z), err = (w - (q - z) s) / Hinv[i,i]; W1[:, i:] -= err ⊗ Hinv[i, i:];
  after the block W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:].
- Quantization math as crates/compress-core/src/stages/quantize/math.rs: signed codes in
  [-2^(b-1), 2^(b-1)-1]; asymmetric: rmin = min(0, min w), rmax = max(0, max w),
  s = (rmax - rmin)/(qmax - qmin) (1 if not > 0), z = clamp(round(qmin - rmin/s));
  symmetric: of s = max|w| / ((qmax - qmin)/2) (compressed-tensors), s = m / qmin (ggml; m the
  signed value of largest magnitude) and each one's least-squares refit Σ w·q / Σ q² (q its
  codes), the one that quantizes the row with the least squared error (ties: the first),
  z = 0. torch.round is half-to-even.
- Loss reported like the reference implementations: Σ err² / 2.

Fixture: W [24, 80] as little-endian f32 hex, X [512, 80] as int8 hex with X = x_int8 / 16
(exact in f32, so XᵀX is exact in any summation order), added as two batches of 256 tokens.
Input column 7 is all zeros (a dead column). Columns are correlated (low-rank + noise) with
very different scales, so GPTQ differs clearly from round-to-nearest.
"""

import argparse
import json
import math
import os

import torch

F32 = torch.float32
OUT, IN, TOKENS, BATCHES = 24, 80, 512, 2
DEAD_COLUMN = 7

CASES = [
    # name, bits, symmetric, strategy, group_size, act_order, block_size
    ("g32_asym4_ragged_block24", 4, False, "group", 32, False, 24),
    ("g32_asym4_ragged_actorder", 4, False, "group", 32, True, 32),
    ("channel_sym3", 3, True, "channel", None, False, 32),
    ("g16_sym4_actorder_block128", 4, True, "group", 16, True, 128),
    ("tensor_asym8", 8, False, "tensor", None, False, 32),
    ("g32_asym2_block128", 2, False, "group", 32, False, 128),
]


def make_inputs():
    g = torch.Generator().manual_seed(1234)
    z = torch.randn(TOKENS, 12, generator=g)
    m = torch.randn(12, IN, generator=g) / 3.0
    noise = 0.4 * torch.randn(TOKENS, IN, generator=g)
    col_scale = torch.exp(0.6 * torch.randn(IN, generator=g))
    x = (z @ m + noise) * col_scale
    x_int = torch.clamp(torch.round(x * 8.0), -127, 127).to(torch.int8)
    x_int[:, DEAD_COLUMN] = 0
    w = 0.05 * torch.randn(OUT, IN, generator=g)
    outliers = torch.rand(OUT, IN, generator=g) < 0.02
    w = torch.where(outliers, w * 6.0, w).to(F32)
    return w, x_int


def hessian(x):
    h = torch.zeros(IN, IN, dtype=F32)
    n = 0
    for batch in x.chunk(BATCHES, 0):
        t = batch.shape[0]
        h *= n / (n + t)
        n += t
        h += (2.0 / n) * (batch.T @ batch)
    return h


def scale_zero(values, bits, symmetric):
    """Parameters per row of `values` [rows, k] (float32 scale, float zero)."""
    qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    lo = torch.clamp(values.min(1).values, max=0.0)
    hi = torch.clamp(values.max(1).values, min=0.0)
    usable = lambda s: torch.where((s != 0) & torch.isfinite(s), s, torch.ones_like(s))
    if symmetric:
        ct = usable(torch.maximum(lo.abs(), hi.abs()) / ((qmax - qmin) / 2.0))
        m = torch.where(-lo > hi, lo, hi)
        gg = usable(m / float(qmin))

        def codes(s):
            return torch.clamp(torch.round(values / s[:, None]), qmin, qmax)

        def err(s):
            return ((values - codes(s) * s[:, None]) ** 2).sum(1)

        def refit(s):
            q = codes(s).double()
            qq = (q * q).sum(1)
            fit = ((values.double() * q).sum(1) / qq).float()
            return torch.where((qq > 0) & (fit != 0) & torch.isfinite(fit), fit, s)

        cands = torch.stack([ct, gg, refit(ct), refit(gg)])
        errs = torch.stack([err(c) for c in cands])
        scale = cands.gather(0, errs.argmin(0, keepdim=True))[0]
        return scale, torch.zeros_like(scale)
    scale = usable((hi - lo) / float(qmax - qmin))
    zero = torch.clamp(torch.round(qmin - lo / scale), qmin, qmax)
    return scale, zero


def quantize(w, scale, zero, bits):
    qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    q = torch.clamp(torch.round(w / scale) + zero, qmin, qmax)
    return q, (q - zero) * scale


def gptq(w, h, bits, symmetric, strategy, group_size, act_order, block_size, damp_frac):
    w, h = w.clone(), h.clone()
    out, n = w.shape
    dead = torch.diag(h) == 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    gs = group_size if strategy == "group" else n
    ng = math.ceil(n / gs)
    scales = torch.ones(out, ng, dtype=F32)
    zeros = torch.zeros(out, ng, dtype=F32)
    if strategy == "tensor":
        s, z = scale_zero(w.reshape(1, -1), bits, symmetric)
        scales[:], zeros[:] = s, z
    elif strategy == "channel" or act_order:
        for g in range(ng):
            s, z = scale_zero(w[:, g * gs:(g + 1) * gs], bits, symmetric)
            scales[:, g], zeros[:, g] = s, z
    lazy = strategy == "group" and not act_order
    if act_order:
        perm = torch.argsort(torch.diag(h), descending=True, stable=True)
    else:
        perm = torch.arange(n)
    w, h = w[:, perm], h[perm][:, perm]
    damp = damp_frac * torch.mean(torch.diag(h))
    h[range(n), range(n)] += damp
    hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
    codes = torch.zeros(out, n, dtype=torch.int64)
    loss = torch.zeros(out, dtype=torch.float64)
    for i1 in range(0, n, block_size):
        i2 = min(i1 + block_size, n)
        count = i2 - i1
        w1 = w[:, i1:i2].clone()
        err1 = torch.zeros(out, count, dtype=F32)
        hinv1 = hinv[i1:i2, i1:i2]
        for i in range(count):
            c = int(perm[i1 + i])
            if lazy and c % gs == 0:
                cur = torch.cat([w1[:, i:], w[:, i2:]], 1)[:, :min(gs, n - c)]
                s, z = scale_zero(cur, bits, symmetric)
                scales[:, c // gs], zeros[:, c // gs] = s, z
            g = c // gs
            col = w1[:, i]
            q, dq = quantize(col, scales[:, g], zeros[:, g], bits)
            codes[:, i1 + i] = q.to(torch.int64)
            err = (col - dq) / hinv1[i, i]
            loss += err.double() ** 2
            w1[:, i:] -= err.unsqueeze(1).matmul(hinv1[i, i:].unsqueeze(0))
            err1[:, i] = err
        w[:, i1:i2] = w1
        w[:, i2:] -= err1.matmul(hinv[i1:i2, i2:])
    codes = codes[:, torch.argsort(perm)]
    if strategy != "group":
        scales, zeros = scales[:, :1], zeros[:, :1]
    if strategy == "tensor":
        scales, zeros = scales[:1], zeros[:1]
    return codes, scales, zeros, float(loss.sum() / 2.0), perm


def dequant(codes, scales, zeros, strategy, gs, n):
    idx = torch.arange(n) // gs if strategy == "group" else torch.zeros(n, dtype=torch.int64)
    return (codes.float() - zeros[:, idx]) * scales[:, idx]


def rtn(w, bits, symmetric, strategy, gs):
    """Round-to-nearest with the same parameter rules, for the sanity check."""
    n = w.shape[1]
    gs = gs if strategy == "group" else n
    if strategy == "tensor":
        s, z = scale_zero(w.reshape(1, -1), bits, symmetric)
        return quantize(w, s, z, bits)[1]
    parts = []
    for g in range(math.ceil(n / gs)):
        blk = w[:, g * gs:(g + 1) * gs]
        s, z = scale_zero(blk, bits, symmetric)
        parts.append(quantize(blk, s.unsqueeze(1), z.unsqueeze(1), bits)[1])
    return torch.cat(parts, 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap.add_argument(
        "--out",
        default=os.path.join(root, "crates/compress-core/tests/fixtures/gptq/reference.json"),
    )
    args = ap.parse_args()
    torch.set_num_threads(1)
    w, x_int = make_inputs()
    x = x_int.to(F32) / 16.0
    h = hessian(x)
    cases = []
    for name, bits, sym, strategy, gs, act, block in CASES:
        codes, scales, zeros, loss, perm = gptq(w, h, bits, sym, strategy, gs, act, block, 0.01)
        w_dead = w.clone()
        w_dead[:, DEAD_COLUMN] = 0.0
        err_gptq = ((x @ (w_dead - dequant(codes, scales, zeros, strategy, gs, IN)).T) ** 2).sum()
        err_rtn = ((x @ (w_dead - rtn(w_dead, bits, sym, strategy, gs)).T) ** 2).sum()
        print(f"{name}: loss {loss:.4f}, output error GPTQ {err_gptq:.4f} vs RTN {err_rtn:.4f}")
        assert err_gptq < err_rtn, name
        cases.append({
            "name": name,
            "bits": bits,
            "symmetric": sym,
            "strategy": strategy,
            "group_size": gs,
            "act_order": act,
            "block_size": block,
            "dampening_frac": 0.01,
            "codes": codes.flatten().tolist(),
            "scales": [float(v) for v in scales.flatten()],
            "zero_points": None if sym else [int(v) for v in zeros.flatten()],
            "loss": loss,
        })
    fixture = {
        "generator": "tests/reference/gptq_reference.py",
        "out": OUT,
        "in": IN,
        "tokens": TOKENS,
        "batches": BATCHES,
        "x_divisor": 16.0,
        "x_int8_hex": x_int.numpy().tobytes().hex(),
        "w_f32le_hex": w.numpy().astype("<f4").tobytes().hex(),
        "cases": cases,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(fixture, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes)")


if __name__ == "__main__":
    main()
