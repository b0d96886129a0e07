#!/usr/bin/env python3
"""The peer of the peer bench: what a team would write instead of running inboxd.

A plain asyncio + aiohttp poller. For each channel it GETs the folder's Graph delta query (the same
request as inboxd's delta mode: same $select, $filter, Prefer headers, page size), follows
@odata.nextLink, keeps the @odata.deltaLink in memory, appends each unread message as one JSON line
to a JSONL file (group commit: the lines waiting are written together and fsynced once), then marks
them read with Graph's $batch (20 requests per batch). Polls are spread evenly over the interval.
No ledger, no limiter, no retries, no admin API, no token refresh (the bench's tokens outlive it).

Driven by the bench over stdin/stdout, one JSON line per command:
  {"cmd": "stats"}  -> counters, and the lateness histogram since the last "mark"
  {"cmd": "mark"}   -> starts a new lateness histogram
It prints {"ready": true} once every channel task is scheduled.
"""

import argparse
import asyncio
import bisect
import datetime
import json
import os
import sys
import urllib.parse

SELECT = ("id,internetMessageId,subject,from,toRecipients,ccRecipients,receivedDateTime,body,"
          "hasAttachments,isRead,conversationId")


class Stats:
    def __init__(self, buckets):
        self.polls = 0
        self.requests = 0
        self.delivered = 0
        self.marked = 0
        self.errors = 0
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.late_max = 0.0

    def late(self, seconds):
        self.counts[bisect.bisect_left(self.buckets, seconds)] += 1
        if seconds > self.late_max:
            self.late_max = seconds

    def mark(self):
        self.counts = [0] * (len(self.buckets) + 1)
        self.late_max = 0.0


class Sink:
    """Group commit: every line waiting when the writer wakes is written and fsynced together."""

    def __init__(self, path):
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self.pending = []
        self.wake = asyncio.Event()

    async def append(self, lines):
        done = asyncio.get_running_loop().create_future()
        self.pending.append((lines, done))
        self.wake.set()
        await done

    def _write(self, data):
        os.write(self.fd, data)
        os.fdatasync(self.fd)

    async def run(self):
        loop = asyncio.get_running_loop()
        while True:
            await self.wake.wait()
            self.wake.clear()
            batch, self.pending = self.pending, []
            data = b"".join(line for lines, _ in batch for line in lines)
            try:
                await loop.run_in_executor(None, self._write, data)
                for _, done in batch:
                    done.set_result(None)
            except OSError as err:
                for _, done in batch:
                    done.set_exception(err)


def address(value):
    if not value:
        return None
    email = value.get("emailAddress") or {}
    return {"name": email.get("name"), "address": email.get("address")}


def record(channel, mailbox, message, content_type):
    body = message.get("body") or {}
    return {
        "channel_id": channel,
        "mailbox": mailbox,
        "message_id": message["id"],
        "internet_message_id": message.get("internetMessageId"),
        "received_at": message.get("receivedDateTime"),
        "from": address(message.get("from")),
        "to": [address(a) for a in message.get("toRecipients") or []],
        "cc": [address(a) for a in message.get("ccRecipients") or []],
        "subject": message.get("subject") or "",
        "body_content_type": body.get("contentType", content_type),
        "body": body.get("content", ""),
        "has_attachments": bool(message.get("hasAttachments")),
        "attachments": [],
        "kind": message.get("@odata.type", "#microsoft.graph.message"),
        "conversation_id": message.get("conversationId"),
        "ingested_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
    }


class Poller:
    def __init__(self, args, session, sink, stats):
        self.graph = args.graph_url.rstrip("/")
        self.interval = args.interval
        self.session = session
        self.sink = sink
        self.stats = stats
        self.content_type = args.body_content_type
        prefer = f'IdType="ImmutableId", outlook.body-content-type="{args.body_content_type}"'
        self.prefer = prefer
        self.delta_prefer = f"{prefer}, odata.maxpagesize={args.page_size}"
        since = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.query = ("?$select=" + urllib.parse.quote(SELECT, safe="") + "&$filter="
                      + urllib.parse.quote(f"receivedDateTime ge {since}", safe=""))

    def start_url(self, mailbox):
        user = urllib.parse.quote(mailbox, safe="@")
        return f"{self.graph}/v1.0/users/{user}/mailFolders/inbox/messages/delta{self.query}"

    async def mark_read(self, token, mailbox, ids):
        user = urllib.parse.quote(mailbox, safe="@")
        for start in range(0, len(ids), 20):
            chunk = ids[start:start + 20]
            body = {"requests": [{
                "id": str(i),
                "method": "PATCH",
                "url": f"/users/{user}/messages/{urllib.parse.quote(mid, safe='')}",
                "headers": {"Content-Type": "application/json", "Prefer": 'IdType="ImmutableId"'},
                "body": {"isRead": True},
            } for i, mid in enumerate(chunk)]}
            async with self.session.post(
                    f"{self.graph}/v1.0/$batch", json=body,
                    headers={"Authorization": "Bearer " + token, "Prefer": self.prefer,
                             "Accept": "application/json"}) as response:
                answer = await response.json()
            self.stats.requests += 1
            self.stats.marked += sum(1 for r in answer.get("responses", [])
                                     if 200 <= int(r.get("status", 0)) < 300)

    async def poll(self, channel, mailbox, token, url):
        """One round of the delta query; answers the delta link it ends with."""
        headers = {"Authorization": "Bearer " + token, "Prefer": self.delta_prefer,
                   "Accept": "application/json"}
        while True:
            async with self.session.get(url, headers=headers) as response:
                if response.status != 200:
                    raise RuntimeError(f"GET answered {response.status}")
                page = await response.json()
            self.stats.requests += 1
            fresh = [m for m in page.get("value", [])
                     if "@removed" not in m and m.get("isRead") is False]
            if fresh:
                lines = [(json.dumps(record(channel, mailbox, m, self.content_type)) + "\n")
                         .encode() for m in fresh]
                await self.sink.append(lines)
                self.stats.delivered += len(fresh)
                await self.mark_read(token, mailbox, [m["id"] for m in fresh])
            following = page.get("@odata.nextLink")
            if following:
                url = following
                continue
            return page.get("@odata.deltaLink") or url

    async def channel(self, channel, mailbox, token, first_at):
        loop = asyncio.get_running_loop()
        url = self.start_url(mailbox)
        due = first_at
        while True:
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            self.stats.late(max(0.0, loop.time() - due))
            try:
                url = await self.poll(channel, mailbox, token, url)
            except Exception:  # noqa: BLE001 - a failed poll is retried at the next interval
                self.stats.errors += 1
            self.stats.polls += 1
            due += self.interval
            now = loop.time()
            if due < now:
                due = now


async def commands(stats, channels):
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = await reader.readline()
        if not line:
            os._exit(0)
        cmd = json.loads(line).get("cmd")
        if cmd == "mark":
            stats.mark()
            answer = {"ok": True}
        else:
            answer = {"polls": stats.polls, "requests": stats.requests,
                      "delivered": stats.delivered, "marked": stats.marked,
                      "errors": stats.errors, "channels": channels,
                      "lateness_buckets": stats.buckets, "lateness_counts": stats.counts,
                      "lateness_max": stats.late_max}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


async def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", required=True, help="JSON file: [[id, mailbox, token], ...]")
    parser.add_argument("--graph-url", required=True)
    parser.add_argument("--interval", type=float, required=True)
    parser.add_argument("--sink", required=True)
    parser.add_argument("--page-size", type=int, default=50)
    parser.add_argument("--body-content-type", default="text")
    parser.add_argument("--buckets", default="0.001,0.005,0.01,0.05,0.1,0.25,0.5,1,2,5,10,30")
    args = parser.parse_args()
    import aiohttp

    with open(args.channels) as f:
        channels = json.load(f)
    stats = Stats([float(b) for b in args.buckets.split(",")])
    sink = Sink(args.sink)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        poller = Poller(args, session, sink, stats)
        loop = asyncio.get_running_loop()
        tasks = [asyncio.create_task(sink.run()), asyncio.create_task(commands(stats, len(channels)))]
        start = loop.time() + 0.1
        spread = args.interval / max(1, len(channels))
        for i, (channel, mailbox, token) in enumerate(channels):
            tasks.append(asyncio.create_task(
                poller.channel(channel, mailbox, token, start + i * spread)))
        del channels
        sys.stdout.write(json.dumps({"ready": True}) + "\n")
        sys.stdout.flush()
        await asyncio.gather(*tasks)


if __name__ == "__main__":
    asyncio.run(main())
