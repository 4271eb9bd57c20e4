#!/usr/bin/env python3
"""bench/peer.py: the far ends of bench/frame.lua and bench/scale.lua, on
Python's ssl module (OpenSSL), so tlspeer is never measured against itself.

  peer.py www    CERT KEY DIR         HTTPS: GET /NAME answers the file DIR/NAME
                                      (HTTP/1.1, Content-Length, keep-alive
                                      unless "Connection: close"), else 404
  peer.py source CERT KEY FILE        after the handshake, sends the length of
                                      FILE (8 bytes, big endian), then FILE
  peer.py sink   CERT KEY             reads a length (8 bytes), then that many
                                      bytes; answers their SHA-256 in hex
  peer.py stall  CERT KEY             handshakes, then never reads (small
                                      receive buffer), until killed
  peer.py tcpidle N HOST PORT         N plain TCP connections, kept idle
  peer.py clients N HOST PORT CA [SIZE]
                                      N TLS clients at once: all connect, then
                                      all handshake together (a barrier), each
                                      sends SIZE random bytes and reads the echo

Servers print "PORT p" once listening (port 0: a free one) and serve until
killed.  Clients print "RESULT key value" lines.
"""
import hashlib
import os
import socket
import ssl
import struct
import sys
import threading
import time


def out(*a):
    print(*a, flush=True)


def server_context(cert, key):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx


def listen(rcvbuf=None):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if rcvbuf:
        # Inherited by accepted sockets: the window stays small.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.bind(("127.0.0.1", int(os.environ.get("PEER_PORT", "0"))))
    s.listen(128)
    out("PORT", s.getsockname()[1])
    return s


def serve(handler, ctx, rcvbuf=None):
    s = listen(rcvbuf)
    while True:
        c, _ = s.accept()

        def run(c=c):
            try:
                t = ctx.wrap_socket(c, server_side=True)
                handler(t)
            except (OSError, ssl.SSLError) as e:
                sys.stderr.write("peer.py: %s\n" % e)
            finally:
                try:
                    c.close()
                except OSError:
                    pass
        threading.Thread(target=run, daemon=True).start()


def read_request(t):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = t.recv(4096)
        if not chunk:
            return None
        data += chunk
    return data.split(b"\r\n\r\n", 1)[0].decode("latin-1")


def www(cert, key, folder):
    files = {}
    for name in os.listdir(folder):
        with open(os.path.join(folder, name), "rb") as f:
            files["/" + name] = f.read()

    def handler(t):
        while True:
            head = read_request(t)
            if head is None:
                return
            line = head.split("\r\n", 1)[0]
            target = line.split(" ")[1] if line.count(" ") >= 2 else "/"
            close = "connection: close" in head.lower()
            blob = files.get(target)
            if blob is not None:
                t.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                          b"Content-Length: %d\r\n\r\n" % len(blob))
                t.sendall(blob)
            else:
                body = b"not here\n"
                t.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            if close:
                return
    serve(handler, server_context(cert, key))


def source(cert, key, path):
    with open(path, "rb") as f:
        blob = f.read()

    def handler(t):
        t.sendall(struct.pack(">Q", len(blob)))
        t.sendall(blob)
        while t.recv(4096):
            pass
    serve(handler, server_context(cert, key))


def sink(cert, key):
    # The client first sends the length as 8 bytes (big endian), then the
    # data; the answer is the SHA-256 hex of the data, then the peer waits
    # for the client to close.
    def handler(t):
        head = b""
        while len(head) < 8:
            chunk = t.recv(8 - len(head))
            if not chunk:
                return
            head += chunk
        left = struct.unpack(">Q", head)[0]
        h = hashlib.sha256()
        while left > 0:
            chunk = t.recv(min(left, 1 << 16))
            if not chunk:
                return
            h.update(chunk)
            left -= len(chunk)
        t.sendall(h.hexdigest().encode() + b"\n")
        while t.recv(4096):
            pass
    serve(handler, server_context(cert, key))


def stall(cert, key):
    def handler(t):
        t.setblocking(True)
        time.sleep(3600)
    serve(handler, server_context(cert, key), rcvbuf=4096)


def client_context(ca):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ca)
    return ctx


def clients(n, host, port, ca, size=1024):
    ctx = client_context(ca)
    socks = []
    for _ in range(n):
        socks.append(socket.create_connection((host, port)))
    barrier = threading.Barrier(n)
    ok = [0]
    times = []
    lock = threading.Lock()

    def run(s):
        try:
            barrier.wait()
            t0 = time.monotonic()
            t = ctx.wrap_socket(s, server_hostname="localhost")
            hs = time.monotonic() - t0
            data = os.urandom(size)
            t.sendall(data)
            got = b""
            while len(got) < size:
                chunk = t.recv(size - len(got))
                if not chunk:
                    break
                got += chunk
            t.close()
            with lock:
                times.append(hs)
                if got == data:
                    ok[0] += 1
        except (OSError, ssl.SSLError) as e:
            sys.stderr.write("peer.py client: %s\n" % e)
    threads = [threading.Thread(target=run, args=(s,)) for s in socks]
    t0 = time.monotonic()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    out("RESULT ok", ok[0])
    out("RESULT wall_s", "%.3f" % (time.monotonic() - t0))
    if times:
        out("RESULT hs_max_s", "%.3f" % max(times))


def tcpidle(n, host, port):
    # Plain TCP connections that never send anything (bench/scale_callgrind.lua).
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    socks = [socket.create_connection((host, port)) for _ in range(n)]
    out("READY", len(socks))
    time.sleep(3600)


def main():
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "www":
        www(*args)
    elif mode == "source":
        source(*args)
    elif mode == "sink":
        sink(*args)
    elif mode == "stall":
        stall(*args)
    elif mode == "clients":
        n, host, port, ca = int(args[0]), args[1], int(args[2]), args[3]
        size = int(args[4]) if len(args) > 4 else 1024
        clients(n, host, port, ca, size)
    elif mode == "tcpidle":
        tcpidle(int(args[0]), args[1], int(args[2]))
    else:
        sys.exit("peer.py: unknown mode " + mode)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
