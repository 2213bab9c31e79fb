#!/usr/bin/python3
"""A fake exchange for the genesis simulator: a few of Binance's REST
endpoints and its WebSocket trade stream, on one aiohttp port.

    exchange_sim.py [--host 127.0.0.1] [--port 0] [--trades-per-s 50]

    GET  /api/v3/ping          {}
    GET  /api/v3/time          {"serverTime": MS}
    POST /api/v3/order         form symbol, side, quantity: a market order,
                               filled at once
    GET  /ws/<symbol>@trade    WebSocket: a trade event every 1/rate s
    POST /admin/latency        {"delay_ms": N}: the `latency` fault
    GET  /admin/latency        {"delay_ms": N}

With a delay, every /api/ answer and every pong waits N ms (+-10 %), and
2 % of /api/ answers wait a second more, so that a client with a short
timeout sees some time out. /admin/ is never delayed.

When listening, prints one JSON line on stdout: {"host", "port", "pid"}.
Stops on SIGTERM or SIGINT. Run it with Debian's /usr/bin/python3
(python3-aiohttp).
"""

import argparse
import asyncio
import json
import os
import random
import signal
import time

from aiohttp import WSMsgType, web

# Base prices: a random walk starts from these (other symbols from 100).
PRICES = {"BTCUSDT": 64000.0, "ETHUSDT": 3100.0, "BNBUSDT": 580.0,
          "SOLUSDT": 150.0, "XRPUSDT": 0.52, "ADAUSDT": 0.45,
          "DOGEUSDT": 0.15, "AVAXUSDT": 35.0, "DOTUSDT": 7.0,
          "LINKUSDT": 17.0}

state = {"delay_ms": 0.0, "order_id": 0, "trade_id": 0}


def now_ms():
    return int(time.time() * 1000)


def price(symbol):
    """The symbol's price after one step of its random walk."""
    p = PRICES.get(symbol, 100.0) * (1 + random.gauss(0, 0.0002))
    PRICES[symbol] = p
    return p


async def delay():
    """Wait as the `latency` fault says (nothing when it is off)."""
    d = state["delay_ms"]
    if d > 0:
        spike = 1000 if random.random() < 0.02 else 0
        await asyncio.sleep((d * random.uniform(0.9, 1.1) + spike) / 1000)


@web.middleware
async def slow_api(request, handler):
    if request.path.startswith("/api/"):
        await request.read()  # the request is in; the answer is late
        await delay()
    return await handler(request)


async def ping(request):
    return web.json_response({})


async def server_time(request):
    return web.json_response({"serverTime": now_ms()})


async def order(request):
    form = await request.post()
    symbol = form.get("symbol", "")
    try:
        qty = float(form.get("quantity", ""))
    except ValueError:
        qty = 0.0
    if not symbol or form.get("side") not in ("BUY", "SELL") or qty <= 0:
        return web.json_response({"code": -1102, "msg": "bad order"},
                                 status=400)
    state["order_id"] += 1
    p = price(symbol)
    return web.json_response({
        "symbol": symbol, "orderId": state["order_id"],
        "transactTime": now_ms(), "status": "FILLED",
        "executedQty": "%.8f" % qty,
        "fills": [{"price": "%.8f" % p, "qty": "%.8f" % qty}]})


async def trades(ws, symbol, every_s):
    while not ws.closed:
        await asyncio.sleep(every_s * random.uniform(0.5, 1.5))
        state["trade_id"] += 1
        t = now_ms()
        await ws.send_str(json.dumps({
            "e": "trade", "E": t, "s": symbol, "t": state["trade_id"],
            "p": "%.8f" % price(symbol),
            "q": "%.8f" % random.uniform(0.001, 2), "T": t,
            "m": random.random() < 0.5}))


async def pong_later(ws, data):
    await delay()
    if not ws.closed:
        await ws.pong(data)


async def stream(request):
    """A trade stream. Pings are answered here, not by aiohttp, so that
    the `latency` fault can delay the pongs."""
    name = request.match_info["stream"]
    if not name.endswith("@trade"):
        raise web.HTTPNotFound(text="only <symbol>@trade streams\n")
    ws = web.WebSocketResponse(autoping=False)
    await ws.prepare(request)
    sender = asyncio.create_task(
        trades(ws, name[:-len("@trade")].upper(), request.app["every_s"]))
    try:
        async for msg in ws:
            if msg.type == WSMsgType.PING:
                asyncio.create_task(pong_later(ws, msg.data))
    finally:
        sender.cancel()
    return ws


async def get_latency(request):
    return web.json_response({"delay_ms": state["delay_ms"]})


async def set_latency(request):
    try:
        d = float((await request.json())["delay_ms"])
        if not 0 <= d <= 60000:
            raise ValueError(d)
    except (ValueError, KeyError, TypeError):
        return web.json_response(
            {"error": 'expected {"delay_ms": 0..60000}'}, status=400)
    state["delay_ms"] = d
    return web.json_response({"delay_ms": d})


async def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--trades-per-s", type=float, default=50.0)
    a = ap.parse_args()

    app = web.Application(middlewares=[slow_api])
    app["every_s"] = 1.0 / max(a.trades_per_s, 0.001)
    app.add_routes([web.get("/api/v3/ping", ping),
                    web.get("/api/v3/time", server_time),
                    web.post("/api/v3/order", order),
                    web.get("/ws/{stream}", stream),
                    web.get("/admin/latency", get_latency),
                    web.post("/admin/latency", set_latency)])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, a.host, a.port).start()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    print(json.dumps({"host": a.host, "port": runner.addresses[0][1],
                      "pid": os.getpid()}), flush=True)
    await stop.wait()
    await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
