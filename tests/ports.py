"""Free loopback ports for the tests' servers, held until the server has bound them.

A port found free and released at once can be taken by anything else before the server binds
it (another test's server, an outgoing connection). `reserve_port` keeps its socket bound,
not listening, with SO_REUSEADDR: PostgreSQL and Python's HTTP servers bind with SO_REUSEADDR
too, so they can take the port while the reservation keeps everyone else off it. Close the
socket once the server listens.
"""

from __future__ import annotations

import socket


def reserve_port() -> socket.socket:
    """A bound socket on 127.0.0.1; its port is `sock.getsockname()[1]`."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock
