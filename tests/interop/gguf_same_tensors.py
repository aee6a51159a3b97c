#!/usr/bin/env python3
"""Compare the tensor data of two GGUF files, tensor by tensor (by name).

Usage: .venv/bin/python tests/interop/gguf_same_tensors.py A.gguf B.gguf

Prints how many tensors have identical type, shape and bytes, and each one that differs
(with the number of differing bytes). Exits 1 if any tensor differs or the sets differ.
"""

import sys

import numpy as np
from gguf import GGUFReader


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    a, b = (GGUFReader(p) for p in sys.argv[1:])
    ta = {t.name: t for t in a.tensors}
    tb = {t.name: t for t in b.tensors}
    if sorted(ta) != sorted(tb):
        print(f"tensor sets differ: {sorted(set(ta) ^ set(tb))}")
        return 1
    same, bad = 0, []
    for name in sorted(ta):
        x, y = ta[name], tb[name]
        bx = np.ascontiguousarray(x.data).view(np.uint8).reshape(-1)
        by = np.ascontiguousarray(y.data).view(np.uint8).reshape(-1)
        if x.tensor_type != y.tensor_type or list(x.shape) != list(y.shape) or bx.size != by.size:
            bad.append(f"{name}: {x.tensor_type.name}{list(x.shape)} vs {y.tensor_type.name}{list(y.shape)}")
        elif not np.array_equal(bx, by):
            bad.append(f"{name}: {int((bx != by).sum())} of {bx.size} bytes differ")
        else:
            same += 1
    print(f"{same} of {len(ta)} tensors byte-identical")
    for line in bad:
        print("  " + line)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
