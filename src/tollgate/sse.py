"""Incremental server-sent-event decoding that keeps every byte for the relay (pure, sans-I/O).

The gateway relays upstream streams byte for byte and only reads them on the side, so the decoder's contract is
about bytes, not just fields: concatenating ``raw`` of every event returned by ``feed`` and ``flush`` gives back
exactly the bytes fed in. To keep that true, every block of lines up to a blank line is returned as an event,
including blocks that hold only comments (``: ping`` keep-alives) and a stray blank line with nothing before it;
such events have ``event=None`` and ``data=b""``.

Framing follows the WHATWG event-stream rules: lines end in ``\\n``, ``\\r\\n`` or a lone ``\\r``; a blank line ends
an event; ``field: value`` loses one leading space from the value; several ``data`` lines join with ``\\n``; lines
starting with ``:`` are comments; ``id``, ``retry`` and unknown fields are ignored (the gateway has no use for
them). A ``\\r`` at the very end of the input is held back until the next byte shows whether it is half of a
``\\r\\n``, so an event's ``raw`` does not depend on where the chunks were split.
"""

from __future__ import annotations

from dataclasses import dataclass

_LF = 0x0A
_CR = 0x0D
_COLON = 0x3A
_SPACE = 0x20


@dataclass(frozen=True, slots=True)
class SseEvent:
    """One event as it came over the wire."""

    raw: bytes  # the exact bytes of the event incl. its terminating blank line (relayed unchanged)
    event: str | None  # the `event:` field, if any
    data: bytes  # the `data:` lines joined by b"\n" (b"" if none)


class SseDecoder:
    """Feed chunks as they arrive; get back the events they complete.

    State between calls: the bytes of the unfinished event, how far into them lines have been read, and the
    fields read so far, so a long event arriving in many chunks is scanned once, not once per chunk.
    """

    __slots__ = ("_buf", "_cr", "_data", "_event", "_scan")

    def __init__(self) -> None:
        self._buf = bytearray()  # bytes of the event being read (starts at an event boundary)
        self._scan = 0  # offset in _buf of the first line not read yet
        # Offset of a b"\r" in _buf, -1 if there is none: most streams never carry one, so only "\n" is searched
        # for per line. When lines have been read past it, it is searched for again from there.
        self._cr = -1
        self._event: str | None = None
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> list[SseEvent]:
        """The events completed by this chunk, in order; a partial event stays buffered."""
        if not chunk:
            return []
        buf = self._buf
        if self._cr < 0:
            found = chunk.find(b"\r")
            if found >= 0:
                self._cr = len(buf) + found
        buf += chunk
        return self._read(final=False)

    def flush(self) -> list[SseEvent]:
        """At end of stream: the trailing event that never got its blank line (if any bytes remain)."""
        events = self._read(final=True)
        buf = self._buf
        if buf:
            end = len(buf)
            if self._scan < end:  # a last line without any line ending
                self._field(self._scan, end)
            events.append(SseEvent(bytes(buf), self._event, b"\n".join(self._data)))
            self._event = None
            self._data = []
            self._scan = end
            self._reset(end)
        return events

    def _read(self, *, final: bool) -> list[SseEvent]:
        """Read whole lines from ``_scan``; cut an event at each blank line."""
        buf = self._buf
        end = len(buf)
        pos = self._scan
        start = 0  # start of the current event in buf
        events: list[SseEvent] = []
        while pos < end:
            eol, nxt = self._line_end(pos, end, final)
            if eol < 0:
                break
            if eol == pos:  # blank line: the event is complete
                events.append(SseEvent(bytes(buf[start:nxt]), self._event, b"\n".join(self._data)))
                self._event = None
                self._data = []
                start = nxt
            else:
                self._field(pos, eol)
            pos = nxt
        self._scan = pos
        if start:
            self._reset(start)
        return events

    def _line_end(self, pos: int, end: int, final: bool) -> tuple[int, int]:
        """(end of the line at ``pos``, start of the next line), or (-1, -1) if the line is not complete yet."""
        buf = self._buf
        lf = buf.find(b"\n", pos)
        cr = self._cr
        if 0 <= cr < pos:
            cr = self._cr = buf.find(b"\r", pos)
        if cr < 0 or (0 <= lf < cr):
            return (lf, lf + 1) if lf >= 0 else (-1, -1)
        # A "\r" ends this line; it is one terminator with a following "\n".
        if cr + 1 < end:
            return cr, cr + 2 if buf[cr + 1] == _LF else cr + 1
        return (cr, cr + 1) if final else (-1, -1)

    def _field(self, pos: int, eol: int) -> None:
        buf = self._buf
        if buf[pos] == _COLON:  # comment
            return
        colon = buf.find(b":", pos, eol)
        if colon < 0:
            name, value = bytes(buf[pos:eol]), b""
        else:
            name = bytes(buf[pos:colon])
            first = colon + 1
            if first < eol and buf[first] == _SPACE:
                first += 1
            value = bytes(buf[first:eol])
        if name == b"data":
            self._data.append(value)
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")

    def _reset(self, consumed: int) -> None:
        """Drop the first ``consumed`` bytes (whole events) and shift the offsets that point past them."""
        del self._buf[:consumed]
        self._scan -= consumed
        if self._cr >= 0:
            self._cr -= consumed
            if self._cr < 0:  # it pointed into the dropped bytes: look again from the unread part
                self._cr = self._buf.find(b"\r", self._scan)
