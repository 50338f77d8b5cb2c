#!/usr/bin/env python3
"""Writes the seed inputs of every fuzz target into seeds/TARGET/ (run by
run.sh before fuzzing). Certificates and keys are made here, at run time,
with openssl and python3-cryptography; nothing is checked in."""

import json
import os
import subprocess
import sys
import tempfile
from datetime import datetime, timedelta, timezone

HERE = os.path.dirname(os.path.abspath(__file__))
SEEDS = os.path.join(HERE, "seeds")


def put(target, name, data):
    d = os.path.join(SEEDS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field(number, value):
    """A protobuf field: bytes/strings/messages (wire type 2) or varints."""
    if isinstance(value, int):
        return varint(number << 3) + varint(value)
    if isinstance(value, str):
        value = value.encode()
    return varint(number << 3 | 2) + varint(len(value)) + value


def smtp():
    for i, line in enumerate([
        b"EHLO client.example.com\r\n",
        b"HELO [192.0.2.1]\r\n",
        b"MAIL FROM:<a@example.com> SIZE=1000 BODY=8BITMIME REQUIRETLS\r\n",
        b"MAIL FROM:<> RET=HDRS ENVID=abc\r\n",
        b"RCPT TO:<Postmaster>\r\nRCPT TO:<b@contoso.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b@contoso.test\r\n",
        b"DATA\r\nRSET\r\nNOOP\r\nQUIT\r\n",
        b"STARTTLS\r\nVRFY x\r\nXPOSTERN ONCE=node1:abc\r\n",
        b"MAIL FROM:<\"quoted local\"@[IPv6:2001:db8::1]>\r\n",
    ]):
        put("smtp_command", f"seed{i}", b"\x05" + line)


def data():
    msgs = [
        b"From: a@example.com\r\nTo: b@contoso.test\r\nSubject: hi\r\n\r\nbody\r\n..stuffed\r\n.\r\n",
        b"Authentication-Results: edge1.contoso.test; tls=pass\r\n"
        b"Authentication-Results: mx.google.com; dkim=pass\r\n"
        b"X-Postern-Organization-AuthAs: Partner\r\n"
        b"Subject: folded\r\n  continuation\r\n\r\nx\r\n.\r\n",
        b"X Odd Name: v\r\nX-Postern-Organization-Id: 1\r\n\r\n.\r\n",
        b"\r\nno headers\r\n.\r\n",
        b"A: 1\nbare LF\r\n\r\n" + b"y" * 1100 + b"\r\n.\r\n",
    ]
    for i, m in enumerate(msgs):
        put("data_reader", f"seed{i}", b"\x03" + m)


def addresses():
    for i, a in enumerate([
        "a@example.com", "<a@example.com>", "<>", "<Postmaster>", "\"x y\"@[192.0.2.1]",
        "user+tag@sub.contoso.test", "[IPv6:2001:db8::1]", "contoso.test", "xn--bcher-kva.example",
        "@relay.example:a@example.com",
    ]):
        put("address", f"seed{i}", a)


def dns():
    for i, n in enumerate([
        "c=us, o=Example Corp, CN=mail.example.com",
        "DC=com,DC=Adatum,CN=VAN-EX2.adatum.com",
        "CN=mail.contoso.test, OU=IT\\, Mail, L=Paris, ST=IDF, E=admin@contoso.test",
        "CN=\"quoted, name\"",
    ]):
        put("subject_dn", f"seed{i}", n)


def certs(work):
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "key.pem", "-out", "cert.pem", "-days", "30", "-subj", "/CN=edge1.contoso.test",
            cwd=work)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "rsa.pem", "-out", "rsacert.pem",
            "-days", "30", "-subj", "/CN=hub1.contoso.test", cwd=work)
    openssl("x509", "-in", "cert.pem", "-outform", "DER", "-out", "cert.der", cwd=work)
    openssl("pkcs12", "-export", "-inkey", "key.pem", "-in", "cert.pem", "-out", "aes.p12",
            "-passout", "pass:pw", cwd=work)
    openssl("pkcs12", "-export", "-legacy", "-inkey", "rsa.pem", "-in", "rsacert.pem", "-out", "legacy.p12",
            "-passout", "pass:", cwd=work)
    openssl("crl2pkcs7", "-nocrl", "-certfile", "cert.pem", "-certfile", "rsacert.pem", "-out", "chain.p7b",
            cwd=work)
    read = lambda n: open(os.path.join(work, n), "rb").read()
    put("cert_import", "pem_with_key", b"\x00" + read("cert.pem") + read("key.pem"))
    put("cert_import", "rsa_pem_with_key", b"\x00" + read("rsacert.pem") + read("rsa.pem"))
    put("cert_import", "der", b"\x00" + read("cert.der"))
    put("cert_import", "aes_p12", b"\x02pw" + read("aes.p12"))
    put("cert_import", "legacy_p12", b"\x00" + read("legacy.p12"))
    put("cert_import", "p7b", b"\x00" + read("chain.p7b"))
    return read("cert.pem"), read("key.pem"), read("cert.der")


def subscription(cert_pem, key_pem):
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    now = datetime.now(timezone.utc)
    body = {
        "format": 1,
        "edge_name": "edge1",
        "fqdn": "edge1.contoso.test",
        "edgesync_endpoint": "127.0.0.1:50636",
        "smtp_endpoint": "127.0.0.1:25",
        "certificate_pem": cert_pem.decode(),
        "bootstrap_secret": "0123456789abcdef",
        "created": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "expires": (now + timedelta(days=3650)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    signed = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    key = serialization.load_pem_private_key(key_pem, password=None)
    signature = key.sign(signed, ec.ECDSA(hashes.SHA256()))
    good = {"body": body, "signature_scheme": "ECDSA_NISTP256_SHA256", "signature": signature.hex()}
    put("subscription", "signed", json.dumps(good, indent=2))
    body["subscribed_store"] = "store-1"
    put("subscription", "tampered", json.dumps({**good, "body": body}))
    put("subscription", "rsa_scheme", json.dumps({**good, "signature_scheme": "RSA_PSS_SHA256"}))


def edgesync(cert_der):
    objects = [
        {"kind": "accepted-domain", "object": {"name": "contoso.test", "kind": "authoritative"}},
        {"kind": "mailbox", "object": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"},
        {"kind": "trusted-root", "object": {"thumbprint": "A" * 40, "subject": "CN=root", "der": list(cert_der[:64])}},
    ]
    snapshot = field(1, "store-1") + field(2, 7) + b"".join(field(3, json.dumps(o)) for o in objects)
    put("edgesync_message", "snapshot", field(2, snapshot))
    changes = [
        {"version": 8, "op": {"Put": objects[0]}},
        {"version": 9, "op": {"Delete": "accepted-domain/contoso.test"}},
    ]
    delta = field(1, "store-1") + field(2, 7) + field(3, 9) + b"".join(field(4, json.dumps(c)) for c in changes)
    put("edgesync_message", "delta", field(3, delta))
    hello = field(1, "hub1") + field(2, "hub1.contoso.test") + field(3, "store-1") + field(4, 3) + field(5, "s3cret")
    put("edgesync_message", "hello", field(1, hello))
    report = field(1, "2026-11-27T20:00:00Z") + field(2, field(1, "smtp:contoso.test") + field(2, 3))
    put("edgesync_message", "edge_hello", field(1, field(1, "edge1") + field(2, "store-1") + field(3, 7) + field(4, report)))
    offer = field(1, cert_der) + field(2, cert_der) + field(3, "ECDSA_NISTP256_SHA256") + field(4, b"\x30\x06\x02\x01\x01\x02\x01\x01")
    put("edgesync_message", "cert_offer", field(20, offer))


def main():
    smtp()
    data()
    addresses()
    dns()
    with tempfile.TemporaryDirectory() as work:
        cert_pem, key_pem, cert_der = certs(work)
    subscription(cert_pem, key_pem)
    edgesync(cert_der)
    print(f"seeds written to {SEEDS}", file=sys.stderr)


if __name__ == "__main__":
    main()
