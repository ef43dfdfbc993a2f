"""A minimal Socket Mode server on the fake's ``/link`` endpoint (slack.md §7.1, §7.3).

``apps.connections.open`` hands out ``ws://127.0.0.1:<port>/link/?ticket=…``; ``slack_sdk``'s SocketModeClient
(the one Bolt's ``SocketModeHandler`` uses) connects there. We speak just enough RFC 6455: the upgrade handshake,
unmasked text frames out, masked frames in, ping → pong, close. The fake then sends ``hello``, pushes envelopes
(``events_api`` / ``slash_commands`` / ``interactive``) and records the client's acks
``{"envelope_id", "payload"?}``; ``disconnect`` messages make the client reconnect.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import socket
import struct
import threading
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from sandbox.slack.server import FakeSlack, _Request

WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OPCODE_CONTINUATION, OPCODE_TEXT, OPCODE_BINARY = 0x0, 0x1, 0x2
OPCODE_CLOSE, OPCODE_PING, OPCODE_PONG = 0x8, 0x9, 0xA

EnvelopeType = Literal["events_api", "slash_commands", "interactive"]


@dataclass(frozen=True)
class SocketAck:
    """What the client answered to one envelope (``acked`` False when it did not answer in time)."""

    envelope_id: str
    acked: bool
    payload: dict[str, Any] | None
    latency: float


class SocketLink:
    """The fake's end of one Socket Mode WebSocket."""

    def __init__(
        self,
        fake: FakeSlack,
        connection: socket.socket,
        reader: io.BufferedIOBase,
        ticket: str,
        ping_interval: float | None = None,
    ) -> None:
        self.fake = fake
        self.ticket = ticket
        self.ping_interval = ping_interval
        self._connection = connection
        self._reader = reader
        self._send_lock = threading.Lock()
        self._acks: dict[str, dict[str, Any]] = {}
        self._acked = threading.Condition()
        self.closed = threading.Event()

    # ---------------------------------------------------------------- sending

    def send_json(self, message: dict[str, Any]) -> None:
        self._send_frame(OPCODE_TEXT, json.dumps(message).encode())

    def push(
        self,
        envelope_type: EnvelopeType,
        payload: dict[str, Any],
        *,
        retry_attempt: int = 0,
        retry_reason: str = "",
        timeout: float = 3.0,
    ) -> SocketAck:
        """Send one envelope and wait up to ``timeout`` for its ack."""
        envelope_id = str(uuid.uuid4())
        started = time.perf_counter()
        self.send_json(
            {
                "envelope_id": envelope_id,
                "type": envelope_type,
                "payload": payload,
                # Only slash commands and interactivity can carry a response payload in the ack.
                "accepts_response_payload": envelope_type != "events_api",
                "retry_attempt": retry_attempt,
                "retry_reason": retry_reason,
            }
        )
        with self._acked:
            self._acked.wait_for(lambda: envelope_id in self._acks or self.closed.is_set(), timeout=timeout)
            ack = self._acks.get(envelope_id)
        latency = time.perf_counter() - started
        if ack is None:
            return SocketAck(envelope_id, False, None, latency)
        response = ack.get("payload")
        return SocketAck(envelope_id, True, response if isinstance(response, dict) else None, latency)

    def disconnect(self, reason: str = "refresh_requested") -> None:
        self.send_json({"type": "disconnect", "reason": reason, "debug_info": {"host": "fake-slack"}})

    def close(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        with contextlib.suppress(OSError):
            self._send_frame(OPCODE_CLOSE, struct.pack("!H", 1000))
        with contextlib.suppress(OSError):
            self._connection.shutdown(socket.SHUT_RDWR)
        with self._acked:
            self._acked.notify_all()

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        header = bytes([0x80 | opcode])
        length = len(payload)
        if length <= 125:
            header += bytes([length])
        elif length <= 0xFFFF:
            header += bytes([126]) + struct.pack("!H", length)
        else:
            header += bytes([127]) + struct.pack("!Q", length)
        with self._send_lock:
            self._connection.sendall(header + payload)

    # ---------------------------------------------------------------- receiving

    def _ping_until_closed(self) -> None:
        # Slack pings its clients too; here it also wakes slack_sdk's blocking read, whose close() would
        # otherwise wait out a 3 s socket timeout.
        assert self.ping_interval is not None
        while not self.closed.wait(self.ping_interval):
            try:
                self._send_frame(OPCODE_PING, b"fake-slack")
            except OSError:
                return

    def serve(self) -> None:
        """Read frames until the client goes away; runs on the HTTP handler's thread."""
        if self.ping_interval:
            threading.Thread(target=self._ping_until_closed, name="fake-slack-ping", daemon=True).start()
        try:
            while not self.closed.is_set():
                frame = self._read_frame()
                if frame is None:
                    break
                opcode, payload = frame
                if opcode == OPCODE_PING:
                    self._send_frame(OPCODE_PONG, payload)
                elif opcode == OPCODE_CLOSE:
                    break
                elif opcode == OPCODE_TEXT:
                    self._on_text(payload)
        except OSError:
            pass
        finally:
            self.close()

    def _on_text(self, payload: bytes) -> None:
        try:
            message = json.loads(payload)
        except ValueError:
            return
        if isinstance(message, dict) and isinstance(message.get("envelope_id"), str):
            with self._acked:
                self._acks[message["envelope_id"]] = message
                self._acked.notify_all()

    def _read_exact(self, size: int) -> bytes | None:
        data = self._reader.read(size) if size else b""
        return data if data is not None and len(data) == size else None

    def _read_frame(self) -> tuple[int, bytes] | None:
        """One complete message (continuation frames joined); None on EOF."""
        opcode: int | None = None
        chunks: list[bytes] = []
        while True:
            head = self._read_exact(2)
            if head is None:
                return None
            fin, frame_opcode = head[0] & 0x80, head[0] & 0x0F
            masked, length = head[1] & 0x80, head[1] & 0x7F
            if length == 126:
                extended = self._read_exact(2)
                if extended is None:
                    return None
                length = struct.unpack("!H", extended)[0]
            elif length == 127:
                extended = self._read_exact(8)
                if extended is None:
                    return None
                length = struct.unpack("!Q", extended)[0]
            mask = self._read_exact(4) if masked else b"\x00\x00\x00\x00"
            data = self._read_exact(length)
            if mask is None or data is None:
                return None
            unmasked = bytes(byte ^ mask[index % 4] for index, byte in enumerate(data))
            if frame_opcode >= OPCODE_CLOSE:
                return frame_opcode, unmasked  # control frames are never fragmented
            if frame_opcode != OPCODE_CONTINUATION:
                opcode = frame_opcode
            chunks.append(unmasked)
            if fin:
                return (opcode if opcode is not None else OPCODE_TEXT), b"".join(chunks)


def serve_link(fake: FakeSlack, request: _Request) -> None:
    """Complete the WebSocket upgrade, say hello, and serve the link until it closes."""
    handler = request.handler
    key = request.headers.get("sec-websocket-key", "")
    accept = base64.b64encode(hashlib.sha1((key + WEBSOCKET_GUID).encode()).digest()).decode()  # noqa: S324
    handler.wfile.write(
        (
            "HTTP/1.1 101 Switching Protocols\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept}\r\n\r\n"
        ).encode()
    )
    handler.wfile.flush()
    handler.close_connection = True
    ticket = dict(part.split("=", 1) for part in request.query.split("&") if "=" in part).get("ticket", "")
    link = SocketLink(
        fake,
        handler.connection,
        handler.rfile,
        ticket,
        ping_interval=fake.socket_ping_interval,
    )
    fake._add_link(link)
    try:
        link.send_json(
            {
                "type": "hello",
                "num_connections": len(fake.socket_links),
                "debug_info": {"host": "fake-slack", "approximate_connection_time": 18060},
                "connection_info": {"app_id": fake.workspace.api_app_id},
            }
        )
        link.serve()
    finally:
        fake._remove_link(link)
