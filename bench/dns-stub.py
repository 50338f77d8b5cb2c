#!/usr/bin/env python3
"""The bench's name server: answers every query at once with NXDOMAIN and
an SOA in the authority section (so resolvers cache the answer, RFC 2308).

Why: the edge checks SPF, DKIM and DMARC of mail from outside, one set of
DNS queries per message. bench.test does not exist, and the machine's own
resolver answers NXDOMAIN without an SOA (nothing can be cached) and drops
queries beyond about 25 a second, so one message in five waited for a
5-second DNS timeout: the bench measured the resolver, not the MTA. An MTA
host runs a local caching resolver; this stands in for it.

Usage: dns-stub.py PORT   (UDP and TCP on 127.0.0.1; runs until killed)
"""
import socket
import socketserver
import struct
import sys
import threading

# SOA for the root: MNAME ".", RNAME ".", serial, refresh, retry, expire, minimum (negative TTL).
SOA_RDATA = b"\x00\x00" + struct.pack(">IIIII", 1, 3600, 600, 86400, 3600)
SOA_RR = b"\x00" + struct.pack(">HHIH", 6, 1, 3600, len(SOA_RDATA)) + SOA_RDATA


def answer(query: bytes) -> bytes | None:
    if len(query) < 12:
        return None
    tid, flags = struct.unpack(">HH", query[:4])
    # The question section: labels up to the zero byte, then type and class.
    end = query.find(b"\x00", 12)
    if end < 0 or end + 5 > len(query):
        return None
    question = query[12 : end + 5]
    rd = flags & 0x0100
    # QR, AA, RD copied, RA; RCODE 3 (NXDOMAIN).
    header = struct.pack(">HHHHHH", tid, 0x8400 | rd | 0x0080 | 3, 1, 0, 1, 0)
    return header + question + SOA_RR


class Udp(socketserver.BaseRequestHandler):
    def handle(self):
        data, sock = self.request
        reply = answer(data)
        if reply:
            sock.sendto(reply, self.client_address)


class Tcp(socketserver.BaseRequestHandler):
    def handle(self):
        while True:
            head = self.request.recv(2)
            if len(head) < 2:
                return
            (length,) = struct.unpack(">H", head)
            data = b""
            while len(data) < length:
                chunk = self.request.recv(length - len(data))
                if not chunk:
                    return
                data += chunk
            reply = answer(data)
            if reply:
                self.request.sendall(struct.pack(">H", len(reply)) + reply)


def main():
    port = int(sys.argv[1])
    udp = socketserver.UDPServer(("127.0.0.1", port), Udp)
    tcp = socketserver.ThreadingTCPServer(("127.0.0.1", port), Tcp)
    tcp.daemon_threads = True
    threading.Thread(target=tcp.serve_forever, daemon=True).start()
    udp.serve_forever()


if __name__ == "__main__":
    main()
