#!/usr/bin/env python3
"""A stub DNS server for tlspeer's specs and bench: it answers A queries
for any name with one address, after a delay, so a lookup can be made to
stall on purpose.  Run it inside a network namespace whose resolv.conf
points at it (ip netns exec NS python3 scripts/dnsstub.py ...).

    dnsstub.py [--addr 127.0.0.1] [--port 53] [--answer 127.0.0.1]
               [--delay SECONDS] [--never NAME]... [--ready FILE]

AAAA and other queries get an empty NOERROR answer (at the same delay), so
a resolver falls back to the A record.  Names given with --never are never
answered.  --ready FILE is written once the socket is bound.
"""
import argparse
import socket
import struct
import threading


def question(packet):
    """The query's id, flags, name (text), qtype and the raw question."""
    qid, flags, qd = struct.unpack(">HHH", packet[:6])
    pos, labels = 12, []
    while packet[pos] != 0:
        n = packet[pos]
        labels.append(packet[pos + 1:pos + 1 + n].decode("ascii", "replace"))
        pos += 1 + n
    end = pos + 5
    qtype = struct.unpack(">H", packet[pos + 1:pos + 3])[0]
    return qid, flags, ".".join(labels).lower(), qtype, packet[12:end]


def answer(qid, raw_q, qtype, addr):
    flags = 0x8180                       # response, recursion available
    an = b""
    if qtype == 1:                       # A
        an = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 1, 4) + socket.inet_aton(addr)
    head = struct.pack(">HHHHHH", qid, flags, 1, 1 if an else 0, 0, 0)
    return head + raw_q + an


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--addr", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=53)
    ap.add_argument("--answer", default="127.0.0.1")
    ap.add_argument("--delay", type=float, default=0.0)
    ap.add_argument("--never", action="append", default=[])
    ap.add_argument("--ready")
    a = ap.parse_args()
    never = {n.lower().rstrip(".") for n in a.never}
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((a.addr, a.port))
    if a.ready:
        with open(a.ready, "w") as f:
            f.write("ready\n")
    lock = threading.Lock()

    def reply(data, peer, qid, raw_q, qtype):
        with lock:
            sock.sendto(answer(qid, raw_q, qtype, a.answer), peer)

    while True:
        data, peer = sock.recvfrom(4096)
        try:
            qid, _, name, qtype, raw_q = question(data)
        except (IndexError, struct.error):
            continue
        if name in never:
            continue
        t = threading.Timer(a.delay, reply, (data, peer, qid, raw_q, qtype))
        t.daemon = True
        t.start()


if __name__ == "__main__":
    main()
