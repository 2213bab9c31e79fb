#!/usr/bin/python3
"""A WebSocket server for the ws plugin's tests and bench, built on Debian's
python3-websockets (an implementation that is not ours). Run it with
/usr/bin/python3: the package is installed for the system's Python only.

    ws_server.py [--port N] [--every MS] [--cert PEM --key PEM]

It answers pings (websockets does so itself), never pings on its own, and
sends a JSON message to every client every MS milliseconds (0: never).
On stdout, one line per event, flushed:

    ready PORT          listening (PORT is the one chosen when --port 0)
    open N              a client connected; N clients now
    sub TEXT            a client sent TEXT (a subscription)
    ok COMMAND          a command from stdin was applied
    stats P M N         (asked) pings received, messages sent, clients

Commands on stdin, one per line:

    silent / talk       stop / resume sending messages (pongs go on)
    nopong / pong       stop / resume answering pings (messages go on)
    close               close every connection (code 1001)
    stats               print the counts
"""

import argparse
import asyncio
import json
import ssl
import sys
import time

import websockets

state = {"talk": True, "pong": True, "seq": 0, "pings": 0, "msgs": 0}
clients = set()


def say(*words):
    print(*words, flush=True)


async def handler(ws, path=None):
    real_pong = ws.pong

    async def pong(data=b""):
        # websockets answers pings through this method; a test can make
        # the server look hung while its messages still flow.
        state["pings"] += 1
        if state["pong"]:
            await real_pong(data)

    ws.pong = pong
    clients.add(ws)
    say("open", len(clients))
    try:
        async for msg in ws:
            say("sub", msg if isinstance(msg, str) else repr(msg))
    except websockets.ConnectionClosed:
        pass
    finally:
        clients.discard(ws)


async def feed(every_s):
    while True:
        await asyncio.sleep(every_s)
        if not state["talk"] or not clients:
            continue
        state["seq"] += 1
        msg = json.dumps({"seq": state["seq"], "ts": time.time()})
        websockets.broadcast(clients, msg)
        state["msgs"] += len(clients)


async def commands():
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = (await reader.readline()).decode()
        if not line:
            return  # stdin closed: keep serving
        cmd = line.strip()
        if cmd in ("silent", "talk"):
            state["talk"] = cmd == "talk"
        elif cmd in ("nopong", "pong"):
            state["pong"] = cmd == "pong"
        elif cmd == "stats":
            say("stats", state["pings"], state["msgs"], len(clients))
            continue
        elif cmd == "close":
            await asyncio.gather(*(c.close(1001, "going away")
                                   for c in list(clients)))
        else:
            say("unknown", cmd)
            continue
        say("ok", cmd)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--every", type=float, default=50.0,
                    help="milliseconds between messages; 0: none")
    ap.add_argument("--cert")
    ap.add_argument("--key")
    a = ap.parse_args()
    tls = None
    if a.cert:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(a.cert, a.key)
    # ping_interval=None: the server never pings, so every ping on the
    # wire is the client's.
    async with websockets.serve(handler, a.host, a.port, ssl=tls,
                                ping_interval=None, ping_timeout=None,
                                reuse_address=True) as srv:
        say("ready", srv.sockets[0].getsockname()[1])
        tasks = [asyncio.ensure_future(commands())]
        if a.every > 0:
            tasks.append(asyncio.ensure_future(feed(a.every / 1000.0)))
        await asyncio.Future()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
