"""A free TCP port for a multi-process test's rendezvous (runs started together must not share
one)."""

import socket


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
