"""Adoption, inside the builder container: give each member the published mtime.

Input: a JSON list of [path, mtime in nanoseconds], relative to the current directory.
Run after the tree is final (blurb, removals), so nothing touches these times again. GNU
tar has no per-member --mtime; this is the one step of an adoption rebuild that is not tar.
"""

import json
import os
import sys

with open(sys.argv[1], encoding="utf-8") as f:
    entries = json.load(f)
for path, ns in entries:
    os.utime(path, ns=(ns, ns), follow_symlinks=False)
print(f"adopt-mtimes: {len(entries)} mtimes set")
