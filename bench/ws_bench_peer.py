#!/usr/bin/python3
# bench/websocket.lua's Python `websockets` peer (Debian python3-websockets).
#   ws_bench_peer.py serve CERT KEY N       wss sink: after N messages, sends "done"
#   ws_bench_peer.py send PORT CA N SIZE    sends N messages of SIZE bytes, waits for "done"
import asyncio, ssl, sys, time

import websockets

mode, args = sys.argv[1], sys.argv[2:]


async def serve(cert, key, n):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)

    async def handler(ws, path=None):
        got = 0
        async for _ in ws:
            got += 1
            if got == n:
                await ws.send("done")

    async with websockets.serve(handler, "127.0.0.1", 0, ssl=ctx, compression=None,
                                max_size=2 ** 24, max_queue=None) as srv:
        print("READY", srv.sockets[0].getsockname()[1], flush=True)
        await asyncio.Future()


async def send(port, ca, n, size):
    ctx = ssl.create_default_context(cafile=ca)
    async with websockets.connect("wss://localhost:%d/" % port, ssl=ctx, compression=None,
                                  max_size=2 ** 24) as ws:
        msg = b"x" * size
        t0 = time.monotonic()
        for _ in range(n):
            await ws.send(msg)
        await ws.recv()
        print("RESULT seconds", time.monotonic() - t0, flush=True)


if mode == "serve":
    asyncio.run(serve(args[0], args[1], int(args[2])))
else:
    asyncio.run(send(int(args[0]), args[1], int(args[2]), int(args[3])))
