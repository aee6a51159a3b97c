"""PyTorch eager reference for `bench/distill_speed.sh`: the same distillation step as
`compress distill --student-layers 2` on the demo model (teacher forward without grad, student
forward, α·T²·KL + (1 − α)·CE, backward, global-norm clip 1.0, AdamW), on CPU.

Usage: python bench/distill_step_torch.py MODEL_DIR STEPS BATCH SEQ THREADS
Prints one JSON line: {"median_step_ms": ..., "steps": ...}.
"""
import json
import sys
import time

import torch
import torch.nn.functional as F
from transformers import LlamaForCausalLM


def main():
    model_dir, steps, batch, seq, threads = sys.argv[1], *map(int, sys.argv[2:6])
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    teacher = LlamaForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32).eval()
    student = LlamaForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32)
    n = student.config.num_hidden_layers
    keep = [round(i * (n - 1) / (n // 2 - 1)) for i in range(n // 2)] if n // 2 > 1 else [0]
    student.model.layers = torch.nn.ModuleList([student.model.layers[i] for i in keep])
    for i, layer in enumerate(student.model.layers):
        layer.self_attn.layer_idx = i
    student.config.num_hidden_layers = len(keep)
    student.train()
    opt = torch.optim.AdamW(student.parameters(), lr=5e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    alpha, temp = 0.7, 2.0
    vocab = teacher.config.vocab_size
    times = []
    for _ in range(steps):
        ids = torch.randint(0, vocab, (batch, seq + 1))
        x, y = ids[:, :-1], ids[:, 1:]
        t0 = time.perf_counter()
        with torch.no_grad():
            zt = teacher(input_ids=x, use_cache=False).logits
        zs = student(input_ids=x, use_cache=False).logits
        soft = F.kl_div(
            F.log_softmax(zs / temp, -1), F.log_softmax(zt / temp, -1), log_target=True, reduction="none"
        ).sum(-1).mean() * temp * temp
        hard = F.cross_entropy(zs.reshape(-1, vocab), y.reshape(-1))
        loss = alpha * soft + (1 - alpha) * hard
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        opt.step()
        times.append(time.perf_counter() - t0)
    warm = sorted(times[min(3, len(times) - 1):])
    print(json.dumps({"median_step_ms": 1000 * warm[len(warm) // 2], "steps": steps}))


if __name__ == "__main__":
    main()
