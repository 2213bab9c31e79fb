#!/usr/bin/python3
"""The live feed (WebSocket, protocol vigil-feed) of a real daemon, with
Debian's python3-websockets as the client: subscribing to series patterns
and events, samples arriving when a value changes, a transition and an
incident, mistakes answered with errors, an upgrade without a subprotocol
(as browsers send), a foreign Origin refused, and a client that stops
reading while the bus is flooded: it is dropped with the reason, and the
client that reads is not."""

import asyncio
import json
import os
import signal
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))
from vigiltest import check, summary  # noqa: E402
from apitest import get_json, grow, setup, start  # noqa: E402

try:
    import websockets
    import websockets.exceptions
except ImportError:
    print("FAIL: python3-websockets is missing (Debian package; make deps)")
    sys.exit(1)

TIMEOUT = 20
PENDING = {}


async def until(ws, pred, timeout=TIMEOUT):
    """The first message, received or held back, that satisfies pred;
    None after timeout. Messages that do not are kept for later calls."""
    held = PENDING.setdefault(id(ws), [])
    for i, m in enumerate(held):
        if pred(m):
            return held.pop(i)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            frame = await asyncio.wait_for(ws.recv(),
                                           end - time.monotonic())
        except asyncio.TimeoutError:
            return None
        found = None
        for m in json.loads(frame):
            if found is None and pred(m):
                found = m
            else:
                held.append(m)
        if found is not None:
            return found
    return None


def ws_url(base):
    return base.replace("http://", "ws://") + "api/v1/feed"


def dropped_total(base):
    st, doc = get_json(base, "/api/v1/series?match="
                             "vigil.http.feed_dropped_total")
    return doc["series"][0]["last"] or 0 if st == 200 and doc["series"] \
        else 0


async def feed(base, watched, sport):
    ws = await websockets.connect(ws_url(base), subprotocols=["vigil-feed"])
    hello = await until(ws, lambda m: m["type"] == "hello")
    check(hello is not None and "limits" in hello, "the feed says hello")
    await ws.send(json.dumps({"op": "subscribe", "series": ["hello.file.*"],
                              "events": ["transition", "incident",
                                         "action"]}))
    first = await until(ws, lambda m: m["type"] == "sample")
    check(first is not None and first["value"] == 10 and
          first["series"].startswith("hello.file.size_bytes"),
          "a new subscriber gets the latest sample at once: %s" % first)
    grow(watched, 70)
    m = await until(ws, lambda m: m["type"] == "sample" and
                    m["value"] == 70)
    check(m is not None, "a changed value arrives as a sample")
    m = await until(ws, lambda m: m["type"] == "transition")
    check(m is not None and m["rule"] == "big_file" and m["from"] == "ok" and
          m["to"] == "warning", "the transition arrives: %s" % m)
    m = await until(ws, lambda m: m["type"] == "incident" and
                    m["event"] == "opened")
    check(m is not None and m["incident"] >= 1, "the incident arrives: %s" % m)

    for bad, what in [("not json", "expected a JSON object"),
                      (json.dumps({"op": "dance"}), "op: expected"),
                      (json.dumps({"op": "subscribe", "series": ["a{b"]}),
                       "series 'a{b'"),
                      (json.dumps({"op": "subscribe", "events": ["x"]}),
                       "events: expected")]:
        await ws.send(bad)
        m = await until(ws, lambda m: m["type"] == "error")
        check(m is not None and what in m["error"],
              "a mistake is answered: %s" % (m and m["error"]))
    await ws.send(json.dumps({"op": "ping"}))
    check(await until(ws, lambda m: m["type"] == "pong") is not None,
          "ping, pong")
    await ws.send("x" * 20000)
    try:
        await asyncio.wait_for(ws.recv(), TIMEOUT)
        await asyncio.wait_for(ws.recv(), TIMEOUT)
    except websockets.exceptions.ConnectionClosed:
        pass
    check(ws.close_code == 1008 and "too large" in (ws.close_reason or ""),
          "a message over 8 KiB closes with the reason (%s %s)" %
          (ws.close_code, ws.close_reason))

    # As browsers do: no subprotocol. The feed is the default protocol.
    ws = await websockets.connect(ws_url(base))
    check(await until(ws, lambda m: m["type"] == "hello") is not None,
          "an upgrade without a subprotocol reaches the feed")
    await ws.close()
    try:
        await websockets.connect(ws_url(base),
                                 origin="http://evil.example")
        check(False, "a foreign Origin is refused")
    except (websockets.exceptions.InvalidStatusCode,
            websockets.exceptions.InvalidHandshake) as e:
        check(True, "a foreign Origin is refused (%s)" % e)

    # A slow client: subscribes to a flood and stops reading. A client
    # that reads (a lighter subscription) goes on.
    before = dropped_total(base)
    reader = await websockets.connect(ws_url(base))
    await reader.send(json.dumps({"op": "subscribe",
                                  "series": ["flood.g1"]}))
    slow = await websockets.connect(ws_url(base), max_queue=1,
                                    read_limit=4096)
    await slow.send(json.dumps({"op": "subscribe", "series": ["flood.*"]}))
    await until(reader, lambda m: m["type"] == "subscribed")
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    got = 0

    async def drain():
        nonlocal got
        while True:
            for m in json.loads(await reader.recv()):
                got += m["type"] == "sample"

    task = asyncio.ensure_future(drain())
    sent = 0
    # Until the server drops the slow client (bounded: 2 million lines).
    while sent < 2000000 and dropped_total(base) <= before:
        for _ in range(100):
            lines = ["flood.g%d:%d|g" % (i % 500, i)
                     for i in range(sent, sent + 50)]
            u.sendto("\n".join(lines).encode(), ("127.0.0.1", sport))
            sent += 50
        await asyncio.sleep(0)  # a turn for the reader
    code = reason = None
    try:
        while True:
            await asyncio.wait_for(slow.recv(), TIMEOUT)
    except websockets.exceptions.ConnectionClosed:
        code, reason = slow.close_code, slow.close_reason
    except asyncio.TimeoutError:
        pass
    check(code == 1008 and "slow consumer" in (reason or ""),
          "the client that stopped reading is dropped, %d lines in: %s %s" %
          (sent, code, reason))
    check(not task.done() and got > 0,
          "the client that reads is still there (%d samples)" % got)
    task.cancel()
    await reader.close()


def main():
    with tempfile.TemporaryDirectory() as d:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        sport = s.getsockname()[1]
        s.close()
        conf, watched = setup(d, http_extra=["feed_queue = 256KiB"],
                              plugins_extra=[
                                  "[plugin statsd]",
                                  "listen = 127.0.0.1:%d" % sport,
                                  "tcp = no", "interval = 1s"])
        v, base = start(conf)
        check(base is not None, "the daemon serves")
        if base is None:
            v.finish(signal.SIGKILL)
            return summary()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            st, doc = get_json(base, "/api/v1/series?match=hello.file.*")
            if st == 200 and doc["series"] and doc["series"][0]["last"]:
                break
            v.pump(0.1)  # waits on the daemon's output, at most 0.1 s
        asyncio.get_event_loop().run_until_complete(feed(base, watched,
                                                         sport))
        deadline = time.monotonic() + 20
        dropped = None
        while time.monotonic() < deadline:
            st, doc = get_json(base, "/api/v1/series?match="
                                     "vigil.http.feed_dropped_total")
            dropped = doc["series"][0]["last"] if st == 200 and \
                doc["series"] else None
            if dropped:
                break
            v.pump(0.1)
        check(dropped is not None and dropped >= 2,
              "vigil.http.feed_dropped_total counts them (%s)" % dropped)
        check(v.finish(signal.SIGTERM) == 0, "stops cleanly")
    return summary()


if __name__ == "__main__":
    sys.exit(main())
