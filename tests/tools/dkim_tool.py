#!/usr/bin/python3
"""dkimpy (Debian's python3-dkim) as the foreign signer and verifier of the
message-authentication tests. DNS answers come from the test's dnsmasq.

  dkim_tool.py verify DNS_PORT MESSAGE      -> prints "pass" or "fail"
  dkim_tool.py sign DOMAIN SELECTOR KEY MESSAGE OUT
  dkim_tool.py arcsign DOMAIN SELECTOR KEY SRV_ID MESSAGE OUT
"""
import sys

import dkim
import dns.resolver


def dnsfunc(port):
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.port = int(port)

    def get_txt(name, timeout=5):
        if isinstance(name, bytes):
            name = name.decode()
        try:
            answer = resolver.resolve(name, "TXT", lifetime=timeout)
        except Exception:
            return None
        for rdata in answer:
            return b"".join(rdata.strings)
        return None

    return get_txt


def main():
    cmd = sys.argv[1]
    if cmd == "verify":
        port, path = sys.argv[2], sys.argv[3]
        message = open(path, "rb").read()
        ok = dkim.verify(message, dnsfunc=dnsfunc(port))
        print("pass" if ok else "fail")
    elif cmd == "sign":
        domain, selector, key, path, out = sys.argv[2:7]
        message = open(path, "rb").read()
        sig = dkim.sign(message, selector.encode(), domain.encode(), open(key, "rb").read(),
                        include_headers=[b"from", b"to", b"subject", b"date", b"message-id"])
        open(out, "wb").write(sig + message)
    elif cmd == "arcsign":
        domain, selector, key, srv_id, path, out = sys.argv[2:8]
        message = open(path, "rb").read()
        headers = dkim.arc_sign(message, selector.encode(), domain.encode(), open(key, "rb").read(),
                                srv_id.encode())
        open(out, "wb").write(b"".join(headers) + message)
    else:
        sys.exit("unknown command " + cmd)


if __name__ == "__main__":
    main()
