"""Loopback ports for the servers the benchmark (benches/bench.py) and the soak test
(tests/soak/soak.py) start, each server on a port of its own."""
import random
import socket
import sys

GIVEN_PORTS = set()


def free_port():
    """A free loopback port for a server, below the kernel's ephemeral range.

    bind(0) and every outgoing connection (wrk's, Envoy's to its upstream) take their ports from
    that range, so a port found free there can be in use again by the time Envoy binds it, and
    Envoy then exits with "Address already in use" (a run on 60b0339 lost its start that way).
    Below the range, only a server that asks for the port by number can take it.
    """
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        low = int(f.read().split()[0])
    rng = random.Random()
    for _ in range(1000):
        port = rng.randrange(10000, low) if low > 11000 else 0
        if port in GIVEN_PORTS:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            port = s.getsockname()[1]
        GIVEN_PORTS.add(port)
        return port
    sys.exit("no free loopback port below the ephemeral range")
