#!/usr/bin/env python3
"""Read our GGUF exports back with the `gguf` PyPI package (llama.cpp's own gguf-py).

Usage (see README.md; .ci/run does this):

    compress export --model FLOAT_DIR  --type T --out GGUF_DIR/T.gguf          T in f32 f16 q8_0 q4_0
    compress export --model PACKED_DIR --type T --out GGUF_DIR/packed-T.gguf   T in q8_0 q4_0
    .venv/bin/python tests/interop/gguf_roundtrip.py FLOAT_DIR PACKED_DIR GGUF_DIR

FLOAT_DIR is an HF Llama directory; PACKED_DIR a pack-quantized dir of it with symmetric
group-32 weights of at most 4 bits. Every file is parsed by `gguf.GGUFReader`, and

* metadata: architecture keys equal config.json; tokens, token types and merges equal
  tokenizer.json (independently read here); bos/eos ids; file type;
* float exports: every tensor equals the safetensors tensor, with q/k rows permuted by
  llama.cpp's `convert_hf_to_gguf.py` formula (re-implemented here in numpy), cast to f32/f16;
* Q8_0 / Q4_0 exports: the bytes equal `gguf.quants.quantize` of those f32 values (gguf-py's
  numpy port of ggml's reference quantizers); 1-D tensors stay f32;
* packed exports: `gguf.quants.dequantize` of each linear equals compressed-tensors'
  decompression of the packed layer with f32 scales, permuted likewise; embeddings, norms
  and lm_head (float in the packed dir) are quantized as in the float case.

Exits non-zero on the first mismatch.
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch
from gguf import GGMLQuantizationType as T
from gguf import GGUFReader
from gguf.quants import dequantize, quantize
from safetensors.torch import load_file

FILE_TYPE = {"f32": 0, "f16": 1, "q4_0": 2, "q8_0": 7}
QTYPE = {"f32": T.F32, "f16": T.F16, "q8_0": T.Q8_0, "q4_0": T.Q4_0}


def permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """convert_hf_to_gguf.py LlamaModel.permute (n_head already the kv count for k)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def hf_to_gguf(cfg: dict) -> dict:
    """GGUF tensor name -> (HF tensor name, heads to permute with or None)."""
    m = {"token_embd.weight": ("model.embed_tokens.weight", None), "output_norm.weight": ("model.norm.weight", None)}
    if not cfg.get("tie_word_embeddings", False):
        m["output.weight"] = ("lm_head.weight", None)
    nh, nkv = cfg["num_attention_heads"], cfg.get("num_key_value_heads", cfg["num_attention_heads"])
    for i in range(cfg["num_hidden_layers"]):
        b, h = f"blk.{i}", f"model.layers.{i}"
        m[f"{b}.attn_norm.weight"] = (f"{h}.input_layernorm.weight", None)
        m[f"{b}.ffn_norm.weight"] = (f"{h}.post_attention_layernorm.weight", None)
        for g, p, heads in [("attn_q", "q_proj", nh), ("attn_k", "k_proj", nkv), ("attn_v", "v_proj", None), ("attn_output", "o_proj", None)]:
            m[f"{b}.{g}.weight"] = (f"{h}.self_attn.{p}.weight", heads)
        for g, p in [("ffn_gate", "gate_proj"), ("ffn_up", "up_proj"), ("ffn_down", "down_proj")]:
            m[f"{b}.{g}.weight"] = (f"{h}.mlp.{p}.weight", None)
    return m


def field(reader: GGUFReader, key: str):
    f = reader.fields.get(key)
    if f is None:
        raise AssertionError(f"missing metadata key {key}")
    return f.contents()


def check_metadata(reader: GGUFReader, model_dir: Path, ty: str) -> None:
    cfg = json.loads((model_dir / "config.json").read_text())
    tok = json.loads((model_dir / "tokenizer.json").read_text())
    arch = field(reader, "general.architecture")
    assert arch == "llama", arch
    assert field(reader, "general.file_type") == FILE_TYPE[ty]
    want = {
        "context_length": cfg["max_position_embeddings"],
        "embedding_length": cfg["hidden_size"],
        "block_count": cfg["num_hidden_layers"],
        "feed_forward_length": cfg["intermediate_size"],
        "attention.head_count": cfg["num_attention_heads"],
        "attention.head_count_kv": cfg["num_key_value_heads"],
        "vocab_size": cfg["vocab_size"],
        "rope.dimension_count": cfg.get("head_dim", cfg["hidden_size"] // cfg["num_attention_heads"]),
    }
    for k, v in want.items():
        got = field(reader, f"llama.{k}")
        assert got == v, f"llama.{k}: {got} != {v}"
    for k, v in [("rope.freq_base", cfg["rope_theta"]), ("attention.layer_norm_rms_epsilon", cfg["rms_norm_eps"])]:
        got = field(reader, f"llama.{k}")
        assert np.float32(got) == np.float32(v), f"llama.{k}: {got} != {v}"
    vocab = ["[PAD%d]" % i for i in range(cfg["vocab_size"])]
    types = [5] * cfg["vocab_size"]
    for t, i in tok["model"]["vocab"].items():
        vocab[i], types[i] = t, 1
    for a in tok.get("added_tokens", []):
        vocab[a["id"]], types[a["id"]] = a["content"], 3 if a["special"] else 4
    assert field(reader, "tokenizer.ggml.model") == "gpt2"
    assert field(reader, "tokenizer.ggml.pre") == "gpt-2"
    assert field(reader, "tokenizer.ggml.tokens") == vocab, "token list differs"
    assert field(reader, "tokenizer.ggml.token_type") == types, "token types differ"
    merges = [m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]]
    assert field(reader, "tokenizer.ggml.merges") == merges, "merges differ"
    assert field(reader, "tokenizer.ggml.bos_token_id") == cfg["bos_token_id"]
    assert field(reader, "tokenizer.ggml.eos_token_id") == cfg["eos_token_id"]
    assert field(reader, "tokenizer.ggml.add_bos_token") is False


def tensors(reader: GGUFReader) -> dict:
    out = {}
    for t in reader.tensors:
        assert t.data_offset % 32 == 0, f"{t.name}: offset {t.data_offset} not 32-aligned"
        out[t.name] = t
    return out


def raw_bytes(t) -> np.ndarray:
    return np.ascontiguousarray(t.data).view(np.uint8).reshape(-1)


def expected_float(hf: dict, name: str, heads) -> np.ndarray:
    w = hf[name].float().numpy()
    return permute(w, heads) if heads else w


def check_file(path: Path, model_dir: Path, ty: str, hf: dict, packed: dict | None) -> str:
    reader = GGUFReader(path)
    check_metadata(reader, model_dir, ty)
    cfg = json.loads((model_dir / "config.json").read_text())
    mapping = hf_to_gguf(cfg)
    got = tensors(reader)
    assert sorted(got) == sorted(mapping), f"tensor sets differ: {sorted(set(got) ^ set(mapping))}"
    n_packed = 0
    for name, (hf_name, heads) in mapping.items():
        t = got[name]
        prefix = hf_name.removesuffix(".weight")
        if packed is not None and f"{prefix}.weight_packed" in packed[0]:
            n_packed += 1
            want = permute(ct_decompress(packed, prefix), heads) if heads else ct_decompress(packed, prefix)
            assert t.tensor_type == QTYPE[ty], f"{name}: {t.tensor_type.name}"
            back = dequantize(raw_bytes(t), t.tensor_type).reshape(want.shape)
            assert np.array_equal(back, want), f"{name}: dequantized packed codes differ (max {np.abs(back - want).max()})"
            continue
        w = expected_float(hf, hf_name, heads)
        qt = QTYPE[ty] if w.ndim == 2 else T.F32
        assert t.tensor_type == qt, f"{name}: type {t.tensor_type.name}, expected {qt.name}"
        assert list(t.shape) == list(reversed(w.shape)), f"{name}: ne {list(t.shape)} vs {w.shape}"
        want = np.ascontiguousarray(quantize(w, qt)).view(np.uint8).reshape(-1)
        if not np.array_equal(raw_bytes(t), want):
            diff = int((raw_bytes(t) != want).sum())
            raise AssertionError(f"{path.name} {name}: {diff} of {want.size} bytes differ from gguf-py's {qt.name}")
    return f"{path.name}: {len(reader.fields)} keys, {len(got)} tensors ({n_packed} from packed codes) exact"


def ct_decompress(packed: tuple, prefix: str) -> np.ndarray:
    """compressed-tensors' decompression of one packed layer, with f32 scales."""
    state, scheme, compressor = packed
    local = {k[len(prefix) + 1 :]: v for k, v in state.items() if k.startswith(prefix + ".")}
    local["weight_scale"] = local["weight_scale"].float()
    return compressor.decompress(local, scheme)["weight"].numpy()


def load_packed(d: Path) -> tuple:
    from compressed_tensors.compressors import BaseCompressor, ModelCompressor
    from transformers.utils.quantization_config import CompressedTensorsConfig

    cfg = json.loads((d / "config.json").read_text())["quantization_config"]
    mc = ModelCompressor.from_compression_config(CompressedTensorsConfig.from_dict({"quantization_config": cfg}))
    scheme = next(iter(mc.quantization_config.config_groups.values()))
    w = scheme.weights
    assert w.symmetric and w.group_size == 32 and w.num_bits <= 4, f"need sym group-32 <= 4 bits, got {w}"
    compressor = BaseCompressor.get_value_from_registry(scheme.format or mc.quantization_config.format)
    state = {}
    for f in sorted(d.glob("*.safetensors")):
        state.update(load_file(str(f)))
    return state, scheme, compressor


def main() -> int:
    if len(sys.argv) != 4:
        print("usage: gguf_roundtrip.py FLOAT_DIR PACKED_DIR GGUF_DIR", file=sys.stderr)
        return 2
    float_dir, packed_dir, gguf_dir = map(Path, sys.argv[1:])
    hf = {}
    for f in sorted(float_dir.glob("*.safetensors")):
        hf.update(load_file(str(f)))
    for ty in ["f32", "f16", "q8_0", "q4_0"]:
        print(check_file(gguf_dir / f"{ty}.gguf", float_dir, ty, hf, None))
    packed = load_packed(packed_dir)
    packed_hf = {k: v for k, v in packed[0].items() if k.endswith(".weight")}
    for ty in ["q8_0", "q4_0"]:
        print(check_file(gguf_dir / f"packed-{ty}.gguf", packed_dir, ty, packed_hf, packed))
    print("gguf round trip: all files exact")
    return 0


if __name__ == "__main__":
    sys.exit(main())
