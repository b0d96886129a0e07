#!/usr/bin/env python3
"""Sums up a dhat heap profile of the load bench (`--heap-profile FILE`) by allocation site.

For each program point it takes the bytes still allocated when the profile was written ("t-end":
the end of the measured window, N channels running) and charges them to the first frame of inboxd's
own code in the allocation's backtrace (or of a dependency when no inboxd frame is present), then
prints the sites that hold the most, in bytes per channel.

    python3 benches/load/heap.py FILE N [TOP]
"""

import collections
import json
import re
import sys

SKIP = re.compile(r"(alloc::|core::|std::|dhat::|<alloc::|hashbrown|__rust|RawVec|"
                  r"<core::|<std::|<hashbrown|serde_json::|<serde|serde::|<T as|<&)")


def site(frames, table):
    names = [table[f] for f in frames]
    for name in names:
        if "inboxd::" in name and "dhat" not in name:
            return short(name)
    for name in names:
        if not SKIP.search(name.split(": ", 1)[-1]):
            return short(name)
    return short(names[0]) if names else "?"


def short(name):
    name = name.split(": ", 1)[-1]
    return re.sub(r"::h[0-9a-f]{16}", "", name)[:160]


def main():
    path, channels = sys.argv[1], int(sys.argv[2])
    top = int(sys.argv[3]) if len(sys.argv) > 3 else 30
    with open(path) as f:
        profile = json.load(f)
    table = profile["ftbl"]
    by_site = collections.Counter()
    blocks = collections.Counter()
    total = 0
    for pp in profile["pps"]:
        if pp.get("eb", 0) == 0:
            continue
        key = site(pp["fs"], table)
        by_site[key] += pp["eb"]
        blocks[key] += pp["ebk"]
        total += pp["eb"]
    print(f"heap at t-end: {total} B, {total / channels:.0f} B per channel over {channels} channels")
    print("| B per channel | blocks per channel | site |")
    print("|---:|---:|---|")
    for key, size in by_site.most_common(top):
        print(f"| {size / channels:.0f} | {blocks[key] / channels:.2f} | `{key}` |")


if __name__ == "__main__":
    main()
