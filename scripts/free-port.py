#!/usr/bin/env python3
"""free-port.py GIVEN [N]: prints N (default 1) loopback ports, space-separated, that were free a
moment ago and are not listed in the file GIVEN, and adds them to it. A port just closed can be
offered again by the next bind, so two servers of one run told ports picked one after the other
could get the same one and fail to start; the file remembers what the run handed out. Every
socket stays bound until all N are chosen, so a repeat is never offered twice either."""
import socket
import sys


def main():
    path, n = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 1
    try:
        with open(path) as f:
            given = set(f.read().split())
    except FileNotFoundError:
        given = set()
    held, ports = [], []
    while len(ports) < n:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        held.append(s)
        port = str(s.getsockname()[1])
        if port not in given:
            given.add(port)
            ports.append(port)
    with open(path, "a") as f:
        f.write("".join(p + "\n" for p in ports))
    print(" ".join(ports))


if __name__ == "__main__":
    main()
