#!/usr/bin/env python3
"""bench/dnsstub.py: a stub DNS server that answers late (or never), for the
"DNS that stalls" scenario of bench/frame.lua.  Run inside the network
namespace that bench/frame.lua makes, where /etc/resolv.conf points at it.

  dnsstub.py [--addr 127.0.0.1] [--port 53] [--delay 3] [--never]
             [--name game.test] [--answer 127.0.0.1] [--log FILE]

An A query for NAME is answered with ANSWER after DELAY seconds; AAAA for
NAME gets an empty answer (NOERROR, no records) after the same delay; any
other name NXDOMAIN at once.  With --never nothing is ever answered.  Each
query is answered from its own timer, so one stalled answer delays no other.
Prints "READY" once bound; logs each query (time, name, type) to --log.
"""
import argparse
import socket
import struct
import sys
import threading
import time


def parse_question(msg):
    """-> (qname lowercased, qtype, end offset of the question)"""
    pos, labels = 12, []
    while True:
        n = msg[pos]
        pos += 1
        if n == 0:
            break
        labels.append(msg[pos:pos + n].decode("ascii", "replace"))
        pos += n
    qtype, _qclass = struct.unpack(">HH", msg[pos:pos + 4])
    return ".".join(labels).lower(), qtype, pos + 4


def answer(msg, qend, rcode, records):
    qid = msg[:2]
    flags = 0x8180 | rcode             # QR, RD, RA
    head = qid + struct.pack(">HHHHH", flags, 1, len(records), 0, 0)
    body = msg[12:qend]
    for rtype, rdata in records:
        body += b"\xc0\x0c" + struct.pack(">HHIH", rtype, 1, 60, len(rdata)) + rdata
    return head + body


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--addr", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=53)
    ap.add_argument("--delay", type=float, default=3.0)
    ap.add_argument("--never", action="store_true")
    ap.add_argument("--name", default="game.test")
    ap.add_argument("--answer", default="127.0.0.1")
    ap.add_argument("--log")
    a = ap.parse_args()
    log = open(a.log, "a", buffering=1) if a.log else None
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((a.addr, a.port))
    print("READY", flush=True)
    lock = threading.Lock()
    t0 = time.monotonic()
    while True:
        msg, peer = s.recvfrom(4096)
        try:
            name, qtype, qend = parse_question(msg)
        except (IndexError, struct.error):
            continue
        if log:
            log.write("%.3f query %s type %d from %s\n" % (time.monotonic() - t0, name, qtype, peer))
        if name != a.name.lower():
            s.sendto(answer(msg, qend, 3, []), peer)      # NXDOMAIN
            continue
        if a.never:
            continue
        records = [(1, socket.inet_aton(a.answer))] if qtype == 1 else []
        reply = answer(msg, qend, 0, records)

        def send(reply=reply, peer=peer):
            with lock:
                s.sendto(reply, peer)
            if log:
                log.write("%.3f answered %s\n" % (time.monotonic() - t0, peer))
        threading.Timer(a.delay, send).start()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)
