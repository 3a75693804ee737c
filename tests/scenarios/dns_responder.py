# A tiny DNS server for the open-UDP-ports scenario: bound to 127.0.0.1:53 of the network
# namespace the test created (never another address), it answers every A query with 127.0.0.7
# and every other query with an empty NOERROR answer, and prints "ready" once bound.
import socket
import sys

s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 53))
print("ready", flush=True)
while True:
    query, peer = s.recvfrom(512)
    if len(query) < 12:
        continue
    end = query.index(b"\0", 12) + 1  # the question's name
    qtype = query[end:end + 2]
    question = query[12:end + 4]
    answers = b"\x00\x01" if qtype == b"\x00\x01" else b"\x00\x00"
    reply = query[:2] + b"\x81\x80" + b"\x00\x01" + answers + b"\x00\x00\x00\x00" + question
    if qtype == b"\x00\x01":
        # A pointer to the question's name, IN A, TTL 60, 127.0.0.7.
        reply += b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\x7f\x00\x00\x07"
    s.sendto(reply, peer)
