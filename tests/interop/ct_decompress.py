#!/usr/bin/env python3
"""Decompress `compress`-written pack-quantized fixtures with compressed-tensors itself.

Usage (see README.md):

    cargo run -p compress-format --example write_packed_fixture -- OUT_DIR
    .venv/bin/python tests/interop/ct_decompress.py OUT_DIR

Every `OUT_DIR/<name>/` holds `model.safetensors` (packed tensors of a few
Linear layers), `quantization_config.json` and `expected.safetensors`
(`<prefix>.weight`, F32, = the Rust `QuantizedLinear::dequantize`). For each
directory the config is parsed the way `from_pretrained` does
(`transformers.CompressedTensorsConfig` -> `ModelCompressor.from_compression_config`)
and every layer is decompressed along two library routes:

1. registry: `BaseCompressor.get_value_from_registry(format).decompress(state_dict, scheme)`
   on the layer's local state dict (what transformers' `dequantize=True` load does);
   once with the scales as stored and once with the scales upcast to f32;
2. module: Linear modules in the scale dtype, `apply_quantization_config`,
   `ModelCompressor.compress_model` (the packed parameter layout transformers
   loads into), a strict `load_state_dict` of the file, then `decompress_model`.

The library computes `(q - z) * s` in the scale dtype, so its result must equal
the expected f32 weight rounded once to that dtype (identity for f32 scales),
and with f32-upcast scales it must equal the expected weight exactly. All
comparisons are `torch.equal`. Exits non-zero on any mismatch.
"""

import json
import sys
from pathlib import Path

import torch
from compressed_tensors.compressors import BaseCompressor, ModelCompressor
from compressed_tensors.quantization import apply_quantization_config
from safetensors.torch import load_file
from transformers.utils.quantization_config import CompressedTensorsConfig

RAGGED_GROUPS_KEY = "compress_ragged_groups"


def parse_config(cfg: dict) -> ModelCompressor:
    """Parses a quantization_config dict as transformers' from_pretrained does."""
    ct_config = CompressedTensorsConfig.from_dict({"quantization_config": cfg})
    return ModelCompressor.from_compression_config(ct_config)


def set_submodule(root: torch.nn.Module, dotted: str, module: torch.nn.Module) -> None:
    """Places `module` at `dotted` under `root`, creating empty parents."""
    *parents, leaf = dotted.split(".")
    node = root
    for name in parents:
        if not hasattr(node, name):
            node.add_module(name, torch.nn.Module())
        node = getattr(node, name)
    node.add_module(leaf, module)


def same(got: torch.Tensor, want: torch.Tensor, what: str) -> None:
    """Raises unless `got` equals `want` exactly (dtype, shape, values)."""
    if got.dtype != want.dtype or got.shape != want.shape:
        raise AssertionError(f"{what}: got {got.dtype}{list(got.shape)}, want {want.dtype}{list(want.shape)}")
    if not torch.equal(got, want):
        diff = (got.float() - want.float()).abs()
        n = int((diff != 0).sum())
        raise AssertionError(f"{what}: {n} of {diff.numel()} values differ, max |diff| {diff.max().item():.3e}")


def check_dir(d: Path) -> str:
    """Checks one fixture directory; returns a summary, raises on mismatch."""
    cfg = json.loads((d / "quantization_config.json").read_text())
    mc = parse_config(cfg)
    qcfg = mc.quantization_config
    assert qcfg.format == "pack-quantized", qcfg.format
    assert len(qcfg.config_groups) == 1, list(qcfg.config_groups)
    scheme = next(iter(qcfg.config_groups.values()))
    compressor = BaseCompressor.get_value_from_registry(scheme.format or qcfg.format)

    packed = load_file(str(d / "model.safetensors"))
    expected = load_file(str(d / "expected.safetensors"))
    prefixes = sorted({k.rsplit(".", 1)[0] for k in packed})
    assert sorted(f"{p}.weight" for p in prefixes) == sorted(expected), "layer sets differ"
    scale_dtype = packed[f"{prefixes[0]}.weight_scale"].dtype

    # Route 1: the registry compressor on each layer's local state dict.
    for p in prefixes:
        local = {k[len(p) + 1 :]: v for k, v in packed.items() if k.startswith(p + ".")}
        want = expected[f"{p}.weight"]
        got = compressor.decompress(local, scheme)["weight"]
        same(got, want.to(scale_dtype), f"{p} (registry, {scale_dtype} scales)")
        local_f32 = dict(local, weight_scale=local["weight_scale"].float())
        got = compressor.decompress(local_f32, scheme)["weight"]
        same(got, want, f"{p} (registry, f32 scales)")

    # Route 2: the module route transformers uses for compressed checkpoints.
    model = torch.nn.Module()
    for p in prefixes:
        out_f, in_f = packed[f"{p}.weight_shape"].tolist()
        set_submodule(model, p, torch.nn.Linear(in_f, out_f, bias=False, dtype=scale_dtype))
    apply_quantization_config(model, qcfg)
    for p in prefixes:
        layer = model.get_submodule(p)
        layer.weight_scale.data.fill_(1.0)
        if hasattr(layer, "weight_zero_point"):
            layer.weight_zero_point.data.zero_()
    mc.compress_model(model)
    layout = {k: (v.dtype, tuple(v.shape)) for k, v in model.state_dict().items()}
    ours = {k: (v.dtype, tuple(v.shape)) for k, v in packed.items()}
    if layout != ours:
        raise AssertionError(f"compressed parameter layout differs:\n  library {layout}\n  ours    {ours}")
    model.load_state_dict(packed, strict=True)
    mc.decompress_model(model)
    for p in prefixes:
        got = model.get_submodule(p).weight.data
        same(got, expected[f"{p}.weight"].to(scale_dtype), f"{p} (module route)")

    w = scheme.weights
    return (
        f"{len(prefixes)} layers, {w.num_bits}-bit {'sym' if w.symmetric else 'asym'} {w.strategy}"
        f"{'' if w.group_size is None else ' G=' + str(w.group_size)}, {str(scale_dtype).removeprefix('torch.')} scales:"
        " registry + module routes exact"
    )


def check_extension_key(d: Path) -> None:
    """The library must parse a config carrying our ragged-groups flag (it ignores it)."""
    cfg = json.loads((d / "quantization_config.json").read_text())
    cfg[RAGGED_GROUPS_KEY] = True
    mc = parse_config(cfg)
    assert mc.quantization_config.format == "pack-quantized"


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        print("usage: ct_decompress.py OUT_DIR", file=sys.stderr)
        return 2
    root = Path(sys.argv[1])
    dirs = sorted(p for p in root.iterdir() if (p / "quantization_config.json").is_file())
    if not dirs:
        print(f"no fixtures under {root}", file=sys.stderr)
        return 2
    passed = failed = 0
    for d in dirs:
        try:
            summary = check_dir(d)
            print(f"PASS {d.name}: {summary}")
            passed += 1
        except Exception as e:  # report every combination, then fail
            print(f"FAIL {d.name}: {type(e).__name__}: {e}")
            failed += 1
    try:
        check_extension_key(dirs[0])
        print(f"PASS {RAGGED_GROUPS_KEY}: the library parses (ignores) our extension key")
        passed += 1
    except Exception as e:
        print(f"FAIL {RAGGED_GROUPS_KEY}: {type(e).__name__}: {e}")
        failed += 1
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
