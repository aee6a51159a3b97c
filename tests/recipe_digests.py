#!/usr/bin/env python3
"""Recipe outputs against stored digests: the weights of every stage (sha256 of each
stages/*/model.safetensors) and the report numbers (size, ppl, KL, top-1 per row) of the named
run dirs must equal tests/recipe_digests.txt, so a refactor that changes what a recipe computes
fails CI. Float results depend on the CPU's instruction set, so the digests are compared only on
the CPU they were recorded on (its model name and AVX-512 support); elsewhere the check says so
and passes.

Usage: python3 tests/recipe_digests.py [--write] NAME=RUN_DIR [NAME=RUN_DIR ...]
"""
import hashlib
import json
import pathlib
import sys

STORE = pathlib.Path(__file__).with_name("recipe_digests.txt")


def cpu():
    model, avx512 = "unknown", False
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name") and model == "unknown":
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                avx512 = " avx512f" in line
    except OSError:
        pass
    return f"{model} (avx512f: {'yes' if avx512 else 'no'})"


def digests(name, run):
    run = pathlib.Path(run)
    out = []
    for f in sorted(run.glob("stages/*/model.safetensors")):
        h = hashlib.sha256(f.read_bytes()).hexdigest()
        out.append(f"{name} {f.relative_to(run)} {h}")
    report = json.loads((run / "report.json").read_text())
    for r in report["rows"]:
        out.append(f"{name} row {r['name']} size={r['size_bytes']} ppl={r['ppl']!r} "
                   f"kld={r['kld']!r} top1={r['top1_agree']!r}")
    if len(out) == len(report["rows"]):
        sys.exit(f"recipe_digests: {run}: no stages/*/model.safetensors")
    return out


def main(args):
    write = args[:1] == ["--write"]
    runs = [a.split("=", 1) for a in args[write:]]
    if not runs or any(len(r) != 2 for r in runs):
        sys.exit(__doc__)
    lines = [f"# cpu: {cpu()}"] + [l for name, run in runs for l in digests(name, run)]
    if write:
        STORE.write_text("\n".join(lines) + "\n")
        print(f"recipe_digests: wrote {len(lines) - 1} digests to {STORE}")
        return
    stored = STORE.read_text().splitlines()
    if stored[0] != lines[0]:
        print(f"recipe_digests: recorded on {stored[0][7:]}, this is {lines[0][7:]}: skipped")
        return
    names = {name for name, _ in runs}
    want = [l for l in stored[1:] if l.split(" ", 1)[0] in names]
    missing = [l for l in want if l not in lines[1:]]
    extra = [l for l in lines[1:] if l not in want]
    if missing or extra:
        print("recipe_digests: outputs differ from tests/recipe_digests.txt")
        for l in missing:
            print(f"  expected: {l}")
        for l in extra:
            print(f"  got:      {l}")
        sys.exit(1)
    print(f"recipe_digests: {len(want)} digests equal the stored ones ({', '.join(sorted(names))})")


if __name__ == "__main__":
    main(sys.argv[1:])
