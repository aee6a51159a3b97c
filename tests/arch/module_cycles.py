#!/usr/bin/env python3
"""Import cycles between sibling modules of each crate under crates/*/src.

Usage (from the repo root):
    python3 tests/arch/module_cycles.py          exit 1 and print the cycles if any, else one OK line
    python3 tests/arch/module_cycles.py --list   also print every sibling edge (debugging)

The module tree comes from the files: `src/lib.rs` (else `src/main.rs`) is the crate root,
`foo.rs` and `foo/mod.rs` are module `foo`, `foo/bar.rs` is `foo::bar`. A file that its parent
does not declare with `mod name;` is not compiled and is skipped, and so are `tests.rs` files
and anything under a `tests/` folder inside src. Test code is ignored: every item marked
`#[cfg(test)]` (the `mod tests { ... }` blocks) is dropped before scanning.

In each file, after comments and string/char literals are blanked out, the references are
  * `use` declarations (brace groups expanded, nested ones too), whose paths start with
    `crate::`, `self::`, `super::` or (2018 edition) the name of a child module of the current
    module, and
  * paths in code starting with `crate::`, `self::` or `super::` (repeated `super::super::`).
Each resolves to the deepest file module it names (`crate::stages::quantize::gptq::GptqConfig`
-> `stages::quantize::gptq`; `super::Foo`, Foo not a module -> the parent module). Inline
modules (`mod x86 { ... }`) count for `self`/`super`, but their references belong to the file.

A reference from module X to module Y adds the edge X' -> Y', where X' and Y' are the children
of the nearest common ancestor of X and Y on the way to X and Y. References between a module
and its own ancestors or descendants add no edge (a parent re-exporting its children and
children using `super::Item` are normal). A strongly connected component of more than one
module among such siblings is a cycle: each is printed with every edge inside it and one
example reference per edge (file:line -> path), so one can see what to move.

Limitations: `#[path]` attributes, macro-generated paths, paths through `use ... as` aliases
and `mod` declarations nested in inline modules are not followed. Python 3 standard library only.
"""

from __future__ import annotations

import re
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent

IDENT = r"(?:r#)?[A-Za-z_][A-Za-z0-9_]*"


# ---------------------------------------------------------------------------------------------
# Lexing: blank out comments and literals, keeping every newline (so line numbers stay right).


def _blank(text: str) -> str:
    return "".join("\n" if c == "\n" else " " for c in text)


def strip_comments_and_literals(src: str) -> str:
    out: list[str] = []
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        nxt = src[i + 1] if i + 1 < n else ""
        if c == "/" and nxt == "/":
            j = src.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
            continue
        if c == "/" and nxt == "*":
            depth, j = 1, i + 2
            while j < n and depth:
                if src.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif src.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(_blank(src[i:j]))
            i = j
            continue
        prev_ident = i > 0 and (src[i - 1].isalnum() or src[i - 1] == "_")
        # Raw strings: r"..", r#".."#, br"..", cr#".."#.
        m = None if prev_ident else re.compile(r'(?:b|c)?r(#*)"').match(src, i)
        if m:
            close = '"' + m.group(1)
            j = src.find(close, m.end())
            j = n if j < 0 else j + len(close)
            out.append(_blank(src[i:j]))
            i = j
            continue
        # Strings: "..", b"..", c"..".
        if c == '"' or (c in "bc" and nxt == '"' and not prev_ident):
            j = i + (1 if c == '"' else 2)
            while j < n and src[j] != '"':
                j += 2 if src[j] == "\\" else 1
            j = min(j + 1, n)
            out.append(_blank(src[i:j]))
            i = j
            continue
        # Char literals ('x', '\n', '\u{..}', b'x') versus lifetimes ('a).
        if c == "'" or (c == "b" and nxt == "'" and not prev_ident):
            q = i if c == "'" else i + 1
            if q + 1 < n and src[q + 1] == "\\":
                j = q + 3  # past the escaped character ('\'' and '\\' included)
                while j < n and src[j] != "'" and src[j] != "\n":
                    j += 1
                j = min(j + 1, n)
                out.append(_blank(src[i:j]))
                i = j
                continue
            if q + 2 < n and src[q + 2] == "'":
                out.append(_blank(src[i : q + 3]))
                i = q + 3
                continue
            out.append(src[i : q + 1])  # a lifetime / label: keep going after the quote
            i = q + 1
            continue
        out.append(c)
        i += 1
    return "".join(out)


def match_brace(code: str, open_at: int) -> int:
    """Index just past the `}` closing the `{` at open_at (literals are already blanked)."""
    depth, j = 0, open_at
    while j < len(code):
        if code[j] == "{":
            depth += 1
        elif code[j] == "}":
            depth -= 1
            if depth == 0:
                return j + 1
        j += 1
    return len(code)


ATTR_CFG_TEST = re.compile(r"#\s*\[\s*cfg\s*\(\s*test\s*\)\s*\]")
ATTR = re.compile(r"\s*#\s*!?\s*\[")
USE_ITEM = re.compile(r"\s*(?:pub\s*(?:\([^)]*\))?\s*)?use\b")


def item_end(code: str, i: int) -> int:
    """End of the item starting at i: its `;` or its `{ ... }` body (outside ( ) and [ ])."""
    if USE_ITEM.match(code, i):
        j = code.find(";", i)
        return len(code) if j < 0 else j + 1
    depth, j = 0, i
    while j < len(code):
        ch = code[j]
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif depth <= 0 and ch == ";":
            return j + 1
        elif depth <= 0 and ch == "{":
            return match_brace(code, j)
        j += 1
    return len(code)


def drop_cfg_test(code: str) -> str:
    """Blank every item marked #[cfg(test)] (with its other attributes)."""
    while True:
        m = ATTR_CFG_TEST.search(code)
        if not m:
            return code
        j = m.end()
        while True:  # further attributes on the same item
            a = ATTR.match(code, j)
            if not a:
                break
            k = code.find("[", a.start())
            depth = 0
            while k < len(code):
                depth += {"[": 1, "]": -1}.get(code[k], 0)
                k += 1
                if depth == 0:
                    break
            j = k
        end = item_end(code, j)
        code = code[: m.start()] + _blank(code[m.start() : end]) + code[end:]


# ---------------------------------------------------------------------------------------------
# The module tree of one crate.


class Crate:
    def __init__(self, name: str, src: Path):
        self.name = name
        self.src = src
        self.files: dict[tuple[str, ...], Path] = {}  # module path -> file
        self.code: dict[tuple[str, ...], str] = {}  # module path -> cleaned code
        self.skipped: list[Path] = []  # files no parent declares

    def rel(self, path: Path) -> str:
        return path.relative_to(ROOT).as_posix()


MOD_DECL = re.compile(r"(?<![\w#])mod\s+(" + IDENT + r")\s*;")
INLINE_MOD = re.compile(r"(?<![\w#])mod\s+(" + IDENT + r")\s*\{")


def load_crate(crate_dir: Path) -> Crate | None:
    src = crate_dir / "src"
    root_file = next((src / f for f in ("lib.rs", "main.rs") if (src / f).is_file()), None)
    if root_file is None:
        return None
    crate = Crate(crate_dir.name, src)
    candidates: dict[tuple[str, ...], Path] = {(): root_file}
    for path in sorted(src.rglob("*.rs")):
        rel = path.relative_to(src)
        if path == root_file or rel.parts[0] == "bin" or path.name in ("lib.rs", "main.rs") and len(rel.parts) == 1:
            continue
        if path.name == "tests.rs" or "tests" in rel.parts[:-1]:
            continue
        parts = rel.parts[:-1] if path.name == "mod.rs" else rel.parts[:-1] + (path.stem,)
        if parts in candidates:
            print(f"module_cycles: both {crate.rel(candidates[parts])} and {crate.rel(path)} define one module", file=sys.stderr)
            sys.exit(2)
        candidates[parts] = path
    # Keep the modules reachable from the root through `mod name;` declarations.
    todo = [()]
    while todo:
        mod = todo.pop()
        path = candidates[mod]
        code = drop_cfg_test(strip_comments_and_literals(path.read_text(encoding="utf-8")))
        crate.files[mod] = path
        crate.code[mod] = code
        for m in MOD_DECL.finditer(code):
            child = mod + (m.group(1).removeprefix("r#"),)
            if child in candidates and child not in crate.files:
                todo.append(child)
    crate.skipped = sorted(p for mod, p in candidates.items() if mod not in crate.files)
    return crate


# ---------------------------------------------------------------------------------------------
# References.


USE_KW = re.compile(r"(?<![\w#$])use\b")
USE_TOKEN = re.compile(r"\s*(::|\{|\}|,|\*|" + IDENT + ")")
INLINE_PATH = re.compile(r"(?<![\w$#:])(crate|super|self)((?:\s*::\s*" + IDENT + r")+)")


def parse_use(code: str, start: int, end: int) -> list[tuple[list[str], int]]:
    """Expand the use tree in code[start:end] into (segments, offset of the leaf) pairs.
    A path written with a leading `::` gets the segment "::" first (an extern crate)."""
    tokens: list[tuple[str, int]] = []
    pos = start
    while pos < end:
        m = USE_TOKEN.match(code, pos)
        if not m or m.end() > end:
            break
        tokens.append((m.group(1), m.start(1)))
        pos = m.end()
    out: list[tuple[list[str], int]] = []

    def tree(k: int, prefix: list[str]) -> int:
        path = list(prefix)
        itself = False
        at = tokens[k][1] if k < len(tokens) else start
        if k < len(tokens) and tokens[k][0] == "::" and not prefix:
            path.append("::")
            k += 1
        while k < len(tokens):
            tok, at = tokens[k]
            if tok == "{":
                k += 1
                while k < len(tokens) and tokens[k][0] != "}":
                    k = tree(k, path)
                    if k < len(tokens) and tokens[k][0] == ",":
                        k += 1
                return k + 1
            if tok == "*":
                out.append((path + ["*"], at))
                return k + 1
            if tok in (",", "}"):
                break
            if tok == "::":
                k += 1
                continue
            if tok == "as":  # `as name` / `as _`: the alias is not part of the path
                k += 2
                break
            if tok == "self" and path:  # `a::{self, ..}`: the module a itself
                itself = True
                k += 1
                continue
            path.append(tok.removeprefix("r#"))
            k += 1
        if path != prefix or itself:
            out.append((path, at))
        return k

    k = 0
    while k < len(tokens):
        k = tree(k, [])
        if k < len(tokens) and tokens[k][0] == ",":
            k += 1
        elif k < len(tokens):
            break
    return out


def inline_context(code: str) -> list[tuple[int, int, str]]:
    """(start, end, name) of each inline `mod name { ... }` in the file."""
    return [(m.start(), match_brace(code, m.end() - 1), m.group(1)) for m in INLINE_MOD.finditer(code)]


def context_at(mod: tuple[str, ...], spans: list[tuple[int, int, str]], at: int) -> tuple[str, ...]:
    return mod + tuple(name for s, e, name in spans if s <= at < e)


def resolve(crate: Crate, ctx: tuple[str, ...], segs: list[str], relative_ok: bool) -> tuple[str, ...] | None:
    """Deepest file module named by the path segs, seen from (possibly inline) module ctx."""
    if not segs or segs[0] == "::":
        return None
    first = segs[0]
    if first == "crate":
        base, rest = (), segs[1:]
    elif first in ("self", "super"):
        base, rest = ctx, segs
        while rest and rest[0] in ("self", "super"):
            if rest[0] == "super":
                if not base:
                    return None
                base = base[:-1]
            rest = rest[1:]
    elif relative_ok and ctx in crate.files and ctx + (first,) in crate.files:
        base, rest = ctx, segs
    else:
        return None
    while base not in crate.files:  # inside an inline module: its file module
        base = base[:-1]
    for seg in rest:
        if seg == "self":
            continue
        if base + (seg,) not in crate.files:
            break
        base = base + (seg,)
    return base


def line_of(code: str, at: int) -> int:
    return code.count("\n", 0, at) + 1


def references(crate: Crate, mod: tuple[str, ...]):
    """Yield (line, path text, target module) for each reference in the file of mod."""
    code = crate.code[mod]
    spans = inline_context(code)
    use_spans = []
    for m in USE_KW.finditer(code):
        end = code.find(";", m.end())
        end = len(code) if end < 0 else end
        use_spans.append((m.start(), end))
        for segs, at in parse_use(code, m.end(), end):
            target = resolve(crate, context_at(mod, spans, at), segs, relative_ok=True)
            if target is not None:
                yield line_of(code, at), "::".join(segs), target
    for m in INLINE_PATH.finditer(code):
        if any(s <= m.start() < e for s, e in use_spans):
            continue
        if re.search(r"\bin\s*$", code[max(0, m.start() - 8) : m.start()]):  # pub(in path)
            continue
        segs = [m.group(1)] + [s.strip().removeprefix("r#") for s in m.group(2).split("::")[1:]]
        target = resolve(crate, context_at(mod, spans, m.start()), segs, relative_ok=False)
        if target is not None:
            yield line_of(code, m.start()), "::".join(segs), target


def sibling_edges(crate: Crate):
    """{(X', Y'): [(file, line, path), ...]} over all references of the crate."""
    edges: dict[tuple[tuple[str, ...], tuple[str, ...]], list[tuple[str, int, str]]] = defaultdict(list)
    for mod in sorted(crate.files):
        for line, text, target in references(crate, mod):
            common = 0
            while common < min(len(mod), len(target)) and mod[common] == target[common]:
                common += 1
            if common == len(mod) or common == len(target):
                continue  # own ancestor or descendant (or itself)
            edge = (mod[: common + 1], target[: common + 1])
            edges[edge].append((crate.rel(crate.files[mod]), line, text))
    return edges


# ---------------------------------------------------------------------------------------------
# Strongly connected components (Tarjan; the graphs are small, recursion is fine).


def tarjan(nodes, succ) -> list[list]:
    index: dict = {}
    low: dict = {}
    stack: list = []
    on_stack: set = set()
    comps: list[list] = []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in succ.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            comps.append(sorted(comp))

    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return comps


def shortest_cycle(start, succ, members) -> list:
    """A shortest cycle through start inside members (BFS)."""
    prev = {start: None}
    queue = [start]
    for v in queue:
        for w in sorted(succ.get(v, ())):
            if w not in members:
                continue
            if w == start:
                path = [v]
                while prev[path[-1]] is not None:
                    path.append(prev[path[-1]])
                return path[::-1] + [start]
            if w not in prev:
                prev[w] = v
                queue.append(w)
    return [start]


def name(mod: tuple[str, ...]) -> str:
    return "::".join(mod) if mod else "crate"


def print_edges(edges) -> None:
    """One line per edge with its first reference: `  a -> b    file:line -> path (+n more)`."""
    arrows = [f"{name(a)} -> {name(b)}" for (a, b), _ in edges]
    width = max(map(len, arrows), default=0)
    for arrow, (_, refs) in zip(arrows, edges):
        f, line, text = refs[0]
        more = f" (+{len(refs) - 1} more)" if len(refs) > 1 else ""
        print(f"  {arrow:<{width}}    {f}:{line} -> {text}{more}")


def main(argv: list[str]) -> int:
    if any(a != "--list" for a in argv[1:]):
        print("usage: python3 tests/arch/module_cycles.py [--list]", file=sys.stderr)
        return 2
    list_edges = "--list" in argv[1:]
    crates = [c for d in sorted((ROOT / "crates").iterdir()) if (d / "src").is_dir() for c in [load_crate(d)] if c]
    n_modules = n_edges = 0
    cycles = []
    for crate in crates:
        edges = sibling_edges(crate)
        n_modules += len(crate.files)
        n_edges += len(edges)
        if list_edges:
            print(f"{crate.name}: {len(crate.files)} modules, {len(edges)} sibling edges")
            for p in crate.skipped:
                print(f"  skipped (no parent declares it): {crate.rel(p)}")
            print_edges(sorted(edges.items()))
        succ: dict = defaultdict(set)
        for a, b in edges:
            succ[a].add(b)
        nodes = {x for e in edges for x in e}
        for comp in tarjan(nodes, succ):
            if len(comp) > 1:
                cycles.append((crate, comp, edges, succ))
    if not cycles:
        print(
            f"module_cycles: OK: {len(crates)} crates, {n_modules} modules, "
            f"{n_edges} sibling edges, no import cycles between sibling modules"
        )
        return 0
    print(f"module_cycles: {len(cycles)} import cycle(s) between sibling modules:")
    for crate, comp, edges, succ in cycles:
        members = set(comp)
        if len(comp) == 2:
            print(f"\n{crate.name}: {name(comp[0])} <-> {name(comp[1])}")
        else:
            cycle = shortest_cycle(comp[0], succ, members)
            print(
                f"\n{crate.name}: cycle among {', '.join(name(m) for m in comp)}"
                f" (e.g. {' -> '.join(name(m) for m in cycle)})"
            )
        print_edges([(e, refs) for e, refs in sorted(edges.items()) if e[0] in members and e[1] in members])
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
