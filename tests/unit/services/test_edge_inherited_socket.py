"""Regression: an edge started by `up` on an inherited socket must set TCP_NODELAY.

uvicorn's ``fd=`` wrapped the descriptor as AF_UNIX, so the transports of accepted TCP
connections skipped TCP_NODELAY and every stream's body waited ~40 ms for the client's delayed
ACK. The invariant: the inherited listening socket keeps its real family, and a connection
accepted through an asyncio server on it has TCP_NODELAY set.
"""

from __future__ import annotations

import asyncio
import socket

from fakeai.services.edge.app import inherited_socket


async def test_inherited_socket_keeps_tcp_family_and_nodelay() -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    sock = inherited_socket(listener.detach())
    assert sock.family == socket.AF_INET

    accepted: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("socket")
        accepted.set_result(bool(peer.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)))
        writer.close()

    server = await asyncio.start_server(on_client, sock=sock)
    port = sock.getsockname()[1]
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await asyncio.wait_for(accepted, 5) is True
        writer.close()
        await writer.wait_closed()
    finally:
        server.close()
        await server.wait_closed()
