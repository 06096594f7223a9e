"""One MQTT 5 connection over a plain socket, its packets read and written by mqtt5 (a sans-I/O
codec in Rust by aiomqtt's maintainer): the consumer's receive path, and the bench's publisher.

Why not paho here (docs/adr/0008-mqtt-client-and-acks.md): at fleet rate paho's network thread
was the consumer's bottleneck. py-spy put 84 % of the consumer's CPU in it (a Properties object
and a topic-matcher walk per message, a recv() per header byte), for ~7,000 messages/s; the
same backlog read here, a whole recv() of packets parsed at a time, goes at ~165,000 messages/s
on this machine. Only what a consumer needs is here: connect, send packets, read the packets
that arrived, keep alive. paho stays the client of tools that send a few messages (control.py).
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time

import mqtt5

Packet = mqtt5.Packet


class Refused(Exception):
    """The broker refused the connection (its CONNACK reason)."""


class ProtocolError(Exception):
    """The broker sent bytes that are not MQTT 5, or closed the connection."""


class Connection:
    """A connected socket: `open()` it, `send()` from any thread, `read()` from one."""

    def __init__(self, sock: socket.socket, ack: mqtt5.ConnAckPacket, rest: bytes) -> None:
        self.sock = sock
        self.connack = ack
        self.last_sent = time.monotonic()
        self._buffer = bytearray(rest)
        self._send_lock = threading.Lock()

    @classmethod
    def open(
        cls, host: str, port: int, connect: mqtt5.ConnectPacket, timeout: float = 10.0
    ) -> Connection:
        """Connect, send CONNECT, wait for CONNACK; Refused or OSError otherwise."""
        sock = socket.create_connection((host, port), timeout=timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(connect.write())
            buffer = b""
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ProtocolError("the broker closed the connection before its CONNACK")
                buffer += chunk
                try:
                    ack, size = mqtt5.read(memoryview(buffer))
                except IndexError:  # not a whole packet yet
                    continue
                except ValueError as exc:
                    raise ProtocolError(f"malformed CONNACK: {exc}") from None
                break
            if not isinstance(ack, mqtt5.ConnAckPacket):
                raise ProtocolError(f"expected CONNACK, got {type(ack).__name__}")
            if ack.reason_code != mqtt5.ConnAckReasonCode.SUCCESS:
                raise Refused(ack.reason_code.name.lower().replace("_", " "))
            # Blocking from now on: a send waits for the broker however long it takes (a
            # send cut by a timeout would leave half a packet in the stream), and read() waits
            # in select() instead.
            sock.settimeout(None)
            return cls(sock, ack, buffer[size:])
        except BaseException:
            sock.close()
            raise

    def send(self, data: bytes) -> None:
        """Write whole packets; on an error the connection is shut (never reused with part of
        a packet written) and the error raised: the reading thread then sees it closed."""
        with self._send_lock:
            try:
                self.sock.sendall(data)
            except OSError:
                self.close()
                raise
            self.last_sent = time.monotonic()

    def read(self, timeout: float) -> list[Packet]:
        """Every whole packet that arrived within `timeout` (maybe none); ProtocolError when
        the broker closed the connection or sent something malformed."""
        packets = self._parse()
        if packets:
            return packets
        try:
            readable, _, _ = select.select([self.sock], [], [], timeout)
        except ValueError:  # closed by another thread (a negative descriptor)
            raise ProtocolError("the connection is closed") from None
        if not readable:
            return []
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise ProtocolError("the broker closed the connection")
        self._buffer += chunk
        return self._parse()

    def _parse(self) -> list[Packet]:
        packets: list[Packet] = []
        view = memoryview(self._buffer)
        used = 0
        try:
            while used < len(view):
                packet, size = mqtt5.read(view[used:])
                packets.append(packet)
                used += size
        except IndexError:  # a packet not yet whole: the next recv() brings the rest
            pass
        except ValueError as exc:
            raise ProtocolError(f"malformed packet from the broker: {exc}") from None
        finally:
            view.release()
        del self._buffer[:used]
        return packets

    def close(self, disconnect: bool = False, end_session: bool = False) -> None:
        """Close the socket; with `disconnect`, say so first (a normal DISCONNECT keeps a
        persistent session, and the broker does not publish a will); with `end_session`, the
        DISCONNECT sets the session's expiry to 0: the broker discards it."""
        if disconnect:
            packet = (
                mqtt5.DisconnectPacket(session_expiry_interval=0)
                if end_session
                else mqtt5.DisconnectPacket()
            )
            with contextlib.suppress(OSError):
                self.send(packet.write())
        with contextlib.suppress(OSError):  # already closed by the other side
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in read()
        self.sock.close()
