"""The generator's stamp: what makes a second run instant, and a corrupt file noticed.

generated/STAMP.json holds the sha256 of every generated file and of the generator's own source
(every file in scripts/demo but *.md, so a change to the recipe regenerates). A run is skipped only when
the source hash matches and every listed file is there with its hash, and no other file is.
Standard library only: `scripts/demo/generate` runs `python3 stamp.py check` before it builds
the virtual environment, so an up-to-date tree needs nothing installed.
"""

import hashlib
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
GEN = os.path.join(os.path.dirname(os.path.dirname(HERE)), "models", "demo", "generated")
STAMP = os.path.join(GEN, "STAMP.json")


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def source_hash():
    """One hash over the generator's files (names and contents); documentation excluded."""
    h = hashlib.sha256()
    for name in sorted(os.listdir(HERE)):
        path = os.path.join(HERE, name)
        if os.path.isfile(path) and not name.endswith((".pyc", ".md")):
            h.update(name.encode() + b"\0" + sha256(path).encode() + b"\0")
    return h.hexdigest()


def generated_files():
    """Every file under generated/ except the stamp itself, as sorted relative paths."""
    out = []
    for root, _dirs, files in os.walk(GEN):
        for name in files:
            rel = os.path.relpath(os.path.join(root, name), GEN)
            if rel != "STAMP.json":
                out.append(rel.replace(os.sep, "/"))
    return sorted(out)


def write(extra):
    files = {rel: sha256(os.path.join(GEN, rel)) for rel in generated_files()}
    doc = dict(extra, source=source_hash(), files=files)
    with open(STAMP + ".part", "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(STAMP + ".part", STAMP)
    return doc


def check():
    """None when up to date, else why not."""
    try:
        with open(STAMP, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return "no stamp (never generated, or interrupted)"
    if doc.get("source") != source_hash():
        return "the generator changed since the last run"
    files = doc.get("files") or {}
    present = set(generated_files())
    if present != set(files):
        missing, extra = sorted(set(files) - present), sorted(present - set(files))
        return f"files missing {missing[:3]} or unexpected {extra[:3]}"
    for rel, digest in sorted(files.items()):
        if sha256(os.path.join(GEN, rel)) != digest:
            return f"{rel} is corrupt (hash differs)"
    return None


if __name__ == "__main__":
    if sys.argv[1:] != ["check"]:
        sys.exit("usage: stamp.py check")
    why = check()
    if why is None:
        print("demo ensemble up to date")
        sys.exit(0)
    print(f"demo ensemble needs generating: {why}", file=sys.stderr)
    sys.exit(1)
