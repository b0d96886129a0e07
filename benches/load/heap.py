#!/usr/bin/env python3
"""Sums up a dhat heap profile of the load bench (`--heap-profile FILE`) per channel.

The profile is written at the end of the measured window, so each program point's "bytes at
t-end" are what the running daemon holds with N channels. Each allocation is charged to the first
category whose pattern appears anywhere in its backtrace (the order below matters: a token set
read through sled is the store cache's while it sits in sled's pages, the token cell's once
decrypted), and the sites within "other" are listed by their first frame of inboxd's code.

    python3 benches/load/heap.py FILE N [TOP]
"""

import collections
import json
import re
import sys

CATEGORIES = [
    ("store cache (sled pages and write buffers: records, tokens, cursors)", r"sled(-0\.|::)"),
    ("status-board entry (ChannelView, its strings, the map)", r"inboxd::status::|ChannelView"),
    ("timer (the actor's armed run_later)", r"TimerFunc"),
    ("actor task (ChannelActor, its actix context, the tokio task)",
     r"ContextFut<inboxd::actors::channel::ChannelActor"),
    ("actor mailbox and address", r"actix::address.*ChannelActor|ChannelActor.*actix::address"),
    ("token strings (the decrypted TokenSet in the channel's cell)",
     r"TokenSet|inboxd::ingest::tokens|inboxd::store::tokens"),
    ("channel runtime (turn, generation, cells)", r"ChannelRuntime|inboxd::ingest::runtime"),
    ("limiter keys (governor maps, mailbox gates)", r"inboxd::rate_limit|governor::"),
    ("channel record (Arc<ChannelRecord>, its strings)",
     r"ChannelRecord|inboxd::domain::ids|inboxd::actors::channel::ChannelActor>::new|channel\.rs"),
    ("supervisor maps", r"inboxd::actors::supervisor"),
    ("metrics", r"metrics(_exporter_prometheus)?::"),
]


def clean(name):
    return re.sub(r"::h[0-9a-f]{16}", "", name.split(": ", 1)[-1])


def main():
    path, channels = sys.argv[1], int(sys.argv[2])
    top = int(sys.argv[3]) if len(sys.argv) > 3 else 15
    with open(path) as f:
        profile = json.load(f)
    table = [clean(name) for name in profile["ftbl"]]
    compiled = [(label, re.compile(pattern)) for label, pattern in CATEGORIES]
    by_category = collections.Counter()
    blocks = collections.Counter()
    other = collections.Counter()
    total = 0
    for pp in profile["pps"]:
        size = pp.get("eb", 0)
        if size == 0:
            continue
        total += size
        trace = "\n".join(table[f] for f in pp["fs"])
        label = next((label for label, rx in compiled if rx.search(trace)), "other")
        by_category[label] += size
        blocks[label] += pp.get("ebk", 0)
        if label == "other":
            frame = next((table[f] for f in pp["fs"] if "inboxd::" in table[f]),
                         table[pp["fs"][-1]] if pp["fs"] else "?")
            other[frame[:150]] += size
    print(f"heap at t-end: {total:,} B = {total / channels:,.0f} B per channel over {channels:,} channels")
    print("| B per channel | blocks per channel | what |")
    print("|---:|---:|---|")
    for label, size in by_category.most_common():
        print(f"| {size / channels:,.0f} | {blocks[label] / channels:.2f} | {label} |")
    print(f"\nlargest sites in 'other' (B per channel):")
    for frame, size in other.most_common(top):
        print(f"  {size / channels:8.1f}  {frame}")


if __name__ == "__main__":
    main()
