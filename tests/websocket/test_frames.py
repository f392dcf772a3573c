"""The server-frame decoder (``_frames``) against an independent implementation (issue 18).

The differential test: Hypothesis builds a sequence of server frames (text and binary
messages of random sizes, fragmented at random, pings and pongs between the fragments, a close,
and now and then one invalid frame), encodes the valid ones with wsproto's *server* side and
the invalid ones with a raw encoder written here, cuts the bytes at random points and feeds
them both to our decoder and to wsproto's *client* connection. Every message, ping, pong,
close and error code must be the same, in the same order.
"""

from __future__ import annotations

import struct
from typing import Any, cast

import pytest
import wsproto.events as wev
from _rawframes import raw_frame
from hypothesis import given
from hypothesis import strategies as st
from regulator.adapters.websocket._frames import Close, FrameDecoder, FrameError, Ping, Pong
from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.frame_protocol import FrameProtocol

Outcome = tuple[Any, ...]


# -- the oracle: wsproto's client connection ------------------------------------------------------
def oracle(chunks: list[bytes]) -> list[Outcome]:
    conn = Connection(ConnectionType.CLIENT)
    out: list[Outcome] = []
    text: list[str] = []
    binary: list[bytes] = []
    for chunk in chunks:
        if conn.state is not ConnectionState.OPEN:
            break
        conn.receive_data(chunk)
        for event in conn.events():
            if isinstance(event, wev.TextMessage):
                text.append(event.data)
                if event.message_finished:
                    out.append(("message", "".join(text)))
                    text = []
            elif isinstance(event, wev.BytesMessage):
                binary.append(bytes(event.data))
                if event.message_finished:
                    out.append(("message", b"".join(binary)))
                    binary = []
            elif isinstance(event, wev.Ping):
                out.append(("ping", bytes(event.payload)))
            elif isinstance(event, wev.Pong):
                out.append(("pong", bytes(event.payload)))
            elif isinstance(event, wev.CloseConnection):
                # a close frame moves wsproto to REMOTE_CLOSING; a parse error leaves it OPEN
                # (cast: mypy still holds conn.state to OPEN, the loop guard's narrowing)
                if cast(ConnectionState, conn.state) is ConnectionState.REMOTE_CLOSING:
                    out.append(("close", int(event.code), event.reason or ""))
                else:
                    out.append(("error", int(event.code)))
                return out
    return out


def ours(chunks: list[bytes], limit: int = 1 << 62) -> list[Outcome]:
    decoder = FrameDecoder(limit)
    out: list[Outcome] = []

    def record(events: list[Any]) -> None:
        for event in events:
            if isinstance(event, str | bytes):
                out.append(("message", event))
            elif isinstance(event, Ping):
                out.append(("ping", event.payload))
            elif isinstance(event, Pong):
                out.append(("pong", event.payload))
            else:
                assert isinstance(event, Close)
                out.append(("close", event.code, event.reason))

    for chunk in chunks:
        try:
            record(decoder.feed(chunk))
            # the count a caller uses to skip looking at each event for control frames
            assert decoder.controls == sum(o[0] in ("ping", "pong", "close") for o in out)
        except FrameError as exc:
            record(exc.events)
            out.append(("error", exc.code))
            assert decoder.done
            if exc.code == 1009:  # refused before the message's bytes past the bound were kept
                held = decoder._size + sum(map(len, decoder._parts))
                assert held <= limit
            return out
    return out


# -- the frame sequences ------------------------------------------------------------------------
payloads = st.one_of(
    st.binary(max_size=200),
    st.integers(126, 70_000).map(lambda n: bytes(i % 251 for i in range(n))),
)
texts = st.one_of(
    st.text(max_size=120),
    st.integers(126, 20_000).map(lambda n: ("é€😀a" * n)[:n]),
)
control_payloads = st.binary(max_size=125)


@st.composite
def message_frames(draw: st.DrawFn) -> list[bytes]:
    """One valid message, maybe fragmented, maybe with control frames between fragments."""
    server = FrameProtocol(client=False, extensions=[])
    is_text = draw(st.booleans())
    data: bytes = draw(texts).encode() if is_text else draw(payloads)
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=4)))
    pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    # wsproto writes text from str pieces; a cut inside a character needs the raw encoder
    try:
        whole_chars = [piece.decode() for piece in pieces] if is_text else None
    except UnicodeDecodeError:
        whole_chars = None
    frames: list[bytes] = []
    for i, piece in enumerate(pieces):
        last = i == len(pieces) - 1
        if whole_chars is not None:
            frames.append(bytes(server.send_data(whole_chars[i], fin=last)))
        elif is_text:
            frames.append(raw_frame(1 if i == 0 else 0, piece, fin=last))
        else:
            frames.append(bytes(server.send_data(piece, fin=last)))
        if not last and draw(st.booleans()):
            kind = draw(st.sampled_from(["ping", "pong"]))
            payload = draw(control_payloads)
            frames.append(bytes(server.ping(payload) if kind == "ping" else server.pong(payload)))
    return frames


def control_frame(draw: st.DrawFn) -> bytes:
    server = FrameProtocol(client=False, extensions=[])
    kind = draw(st.sampled_from(["ping", "pong"]))
    payload = draw(control_payloads)
    return bytes(server.ping(payload) if kind == "ping" else server.pong(payload))


VALID_CLOSE_CODES = st.one_of(
    st.sampled_from([1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013]),
    st.integers(3000, 4999),
)


def close_frame(draw: st.DrawFn) -> bytes:
    server = FrameProtocol(client=False, extensions=[])
    if draw(st.booleans()):
        return bytes(server.close())
    code = draw(VALID_CLOSE_CODES)
    return bytes(server.close(code, draw(st.text(max_size=30))))


def invalid_frame(draw: st.DrawFn) -> list[bytes]:
    """One or two frames breaking one rule (the oracle decides which error they are)."""
    kind = draw(
        st.sampled_from(
            [
                "opcode",
                "rsv",
                "masked",
                "fragmented_control",
                "long_control",
                "length_16",
                "length_64",
                "length_msb",
                "orphan_continuation",
                "message_inside_fragments",
                "bad_utf8",
                "bad_utf8_fragment",
                "truncated_utf8",
                "close_1_byte",
                "close_bad_code",
                "close_bad_reason",
            ]
        )
    )
    body = draw(st.binary(max_size=40))
    if kind == "opcode":
        return [raw_frame(draw(st.sampled_from([3, 4, 5, 6, 7, 11, 12, 13, 14, 15])), body)]
    if kind == "rsv":
        return [raw_frame(draw(st.sampled_from([1, 2, 8, 9])), body, rsv=draw(st.integers(1, 7)))]
    if kind == "masked":
        return [raw_frame(draw(st.sampled_from([1, 2, 9])), b"hi", mask=b"\x01\x02\x03\x04")]
    if kind == "fragmented_control":
        return [raw_frame(draw(st.sampled_from([8, 9, 10])), body[:10], fin=False)]
    if kind == "long_control":
        return [raw_frame(draw(st.sampled_from([8, 9, 10])), bytes(126 + len(body)))]
    if kind == "length_16":
        return [raw_frame(2, body, length_form=16)]
    if kind == "length_64":
        return [raw_frame(2, body, length_form=64)]
    if kind == "length_msb":
        return [b"\x82\x7f" + struct.pack("!Q", (1 << 63) | 70_000)]
    if kind == "orphan_continuation":
        return [raw_frame(0, body, fin=draw(st.booleans()))]
    if kind == "message_inside_fragments":
        return [raw_frame(2, body, fin=False), raw_frame(draw(st.sampled_from([1, 2])), body)]
    if kind == "bad_utf8":
        return [
            raw_frame(1, b"ok" + draw(st.sampled_from([b"\xff", b"\xc0\xaf", b"\xed\xa0\x80"])))
        ]
    if kind == "bad_utf8_fragment":
        return [raw_frame(1, b"a\xff", fin=False), raw_frame(0, b"b")]
    if kind == "truncated_utf8":
        return [raw_frame(1, "é".encode()[:1], fin=False), raw_frame(0, b"")]
    if kind == "close_1_byte":
        return [raw_frame(8, b"\x03")]
    if kind == "close_bad_code":
        bad = st.sampled_from([0, 999, 1004, 1005, 1006, 1014, 1015, 1016, 2000, 2999, 5000])
        code = draw(bad | st.integers(0, 65535))  # any code too: the oracle says which are valid
        return [raw_frame(8, struct.pack("!H", code))]
    return [raw_frame(8, struct.pack("!H", 1000) + b"\xff")]


@st.composite
def streams(draw: st.DrawFn) -> list[bytes]:
    frames: list[bytes] = []
    for _ in range(draw(st.integers(0, 6))):
        if draw(st.integers(0, 3)):
            frames.extend(draw(message_frames()))
        else:
            frames.append(control_frame(draw))
    if draw(st.integers(0, 2)) == 0:
        at = draw(st.integers(0, len(frames)))
        frames[at:at] = invalid_frame(draw)
    if draw(st.booleans()):
        frames.append(close_frame(draw))
        if draw(st.booleans()):  # nothing after a close counts
            frames.extend(draw(message_frames()))
    return frames


@st.composite
def cut(draw: st.DrawFn, blob: bytes) -> list[bytes]:
    points = sorted(set(draw(st.lists(st.integers(0, len(blob)), max_size=12))))
    return [blob[a:b] for a, b in zip([0, *points], [*points, len(blob)], strict=True) if b > a]


@given(st.data())
def test_the_decoder_agrees_with_wsproto_on_any_frames_cut_anywhere(data: st.DataObject) -> None:
    blob = b"".join(data.draw(streams()))
    chunks = data.draw(cut(blob))
    assert ours(chunks) == oracle(chunks)


def frame_spans(blob: bytes) -> list[tuple[int, int, int, bool, int]]:
    """(start, header end, opcode, fin, payload length) of each frame, walked from the length
    fields alone (no rule checked: that is the decoders' business)."""
    spans = []
    pos = 0
    while pos + 2 <= len(blob):
        first, second = blob[pos], blob[pos + 1]
        length, head = second & 0x7F, pos + 2
        if length == 126:
            length, head = int.from_bytes(blob[head : head + 2], "big"), head + 2
        elif length == 127:
            length, head = int.from_bytes(blob[head : head + 8], "big"), head + 8
        head += 4 if second & 0x80 else 0
        if head > len(blob):
            break
        spans.append((pos, head, first & 0x0F, bool(first & 0x80), length))
        pos = head + length
    return spans


def expected_with_limit(blob: bytes, limit: int) -> tuple[list[Outcome], int]:
    """wsproto's outcome with a size bound it does not have: the frame whose header takes its
    message's total past ``limit`` ends the input with 1009, unless wsproto finds that header
    (or anything before it) wrong; everything before that header is wsproto's. Also returns
    where that header ends (the blob's length if none crosses)."""
    total = 0
    for start, head, opcode, fin, length in frame_spans(blob):
        if opcode & 0x08:  # control frames are not part of a message
            continue
        total = length if opcode else total + length
        if total > limit:
            before = oracle([blob[:head]])
            if before and before[-1][0] in ("error", "close"):
                return before, head
            # wsproto checks some header rules only with the payload: the same header, empty
            # and not final (a final one would end the text and check its UTF-8 early)
            probe = oracle([blob[:start] + bytes([blob[start] & 0x7F, 0])])
            if probe and probe[-1][0] == "error":
                return [*before, probe[-1]], head
            return [*before, ("error", 1009)], head
        if fin:
            total = 0
    return oracle([blob]), len(blob)


def message_totals(blob: bytes) -> list[int]:
    """Every prefix total of every message's data frames (the sizes a bound can fall on)."""
    totals, total = [], 0
    for _start, _head, opcode, fin, length in frame_spans(blob):
        if not opcode & 0x08:
            total = length if opcode else total + length
            totals.append(total)
            total = 0 if fin else total
    return totals


@given(st.data())
def test_the_size_bound_is_enforced_exactly_and_from_the_headers(data: st.DataObject) -> None:
    # wsproto has no size bound, so the bound is computed here from the frames' length fields:
    # 1009 exactly when a message's total exceeds the limit, at the header that crosses it
    # (``ours`` also checks that no more than the limit was held by then). The limit falls on
    # a message's size, one byte either side of it, or anywhere.
    blob = b"".join(data.draw(streams()))
    chunks = data.draw(cut(blob))
    totals = message_totals(blob)
    near = st.sampled_from(totals).flatmap(lambda t: st.integers(max(0, t - 1), t + 1))
    limit = data.draw(near | st.integers(0, 80_000) if totals else st.integers(0, 80_000))
    expected, head = expected_with_limit(blob, limit)
    assert ours(chunks, limit) == expected
    if expected and expected[-1] == ("error", 1009):  # decided by the header alone
        assert ours([blob[:head]], limit) == expected


# -- the named cases ------------------------------------------------------------------------------
def one_error(blob: bytes, limit: int = 1 << 20) -> tuple[int, str]:
    with pytest.raises(FrameError) as caught:
        FrameDecoder(limit).feed(blob)
    return caught.value.code, caught.value.reason


@pytest.mark.parametrize(
    ("blob", "code", "words"),
    [
        (raw_frame(3, b"x"), 1002, "unknown opcode"),
        (raw_frame(11, b"x"), 1002, "unknown opcode"),
        (raw_frame(1, b"x", rsv=4), 1002, "reserved bit"),
        (raw_frame(2, b"x", rsv=1), 1002, "reserved bit"),
        (raw_frame(1, b"hi", mask=b"abcd"), 1002, "masked"),
        (raw_frame(9, b"x", fin=False), 1002, "fragmented control"),
        (raw_frame(9, bytes(126)), 1002, "over 125"),
        (raw_frame(2, b"x", length_form=16), 1002, "shortest form"),
        (raw_frame(2, bytes(300), length_form=64), 1002, "shortest form"),
        (raw_frame(0, b"x"), 1002, "no message to continue"),
        (raw_frame(1, b"a", fin=False) + raw_frame(2, b"b"), 1002, "inside a fragmented"),
        (raw_frame(1, b"\xff"), 1007, "not UTF-8"),
        (raw_frame(1, b"\xe2\x82", fin=False) + raw_frame(0, b""), 1007, "not UTF-8"),
        (raw_frame(8, b"\x03"), 1002, "1-byte"),
        (raw_frame(8, struct.pack("!H", 1005)), 1002, "code 1005"),
        (raw_frame(8, struct.pack("!H", 1004)), 1002, "code 1004"),
        (raw_frame(8, struct.pack("!H", 2999)), 1002, "code 2999"),
        (raw_frame(8, struct.pack("!H", 1000) + b"\xc3"), 1007, "close reason is not UTF-8"),
    ],
)
def test_each_bad_frame_is_refused_with_its_close_code(blob: bytes, code: int, words: str) -> None:
    got_code, reason = one_error(blob)
    assert got_code == code
    assert words in reason


def test_a_message_too_big_is_refused_from_its_header_before_its_payload_arrives() -> None:
    decoder = FrameDecoder(1000)
    header = b"\x82\x7f" + struct.pack("!Q", 10_000_000)  # 10 MB announced, none sent
    with pytest.raises(FrameError) as caught:
        decoder.feed(header)
    assert caught.value.code == 1009
    assert "max_message_bytes=1000" in caught.value.reason


def test_fragments_count_towards_the_bound_together() -> None:
    decoder = FrameDecoder(1000)
    assert decoder.feed(raw_frame(2, bytes(600), fin=False)) == []
    with pytest.raises(FrameError) as caught:
        decoder.feed(raw_frame(0, bytes(500))[:4])  # the next header alone is enough
    assert caught.value.code == 1009
    assert FrameDecoder(1000).feed(raw_frame(2, bytes(1000))) == [bytes(1000)]


def test_events_before_a_violation_are_kept_in_order() -> None:
    blob = raw_frame(1, b"one") + raw_frame(9, b"p") + raw_frame(2, b"two") + raw_frame(3, b"")
    with pytest.raises(FrameError) as caught:
        FrameDecoder(100).feed(blob)
    first, ping, last = caught.value.events
    assert (first, last) == ("one", b"two")
    assert isinstance(ping, Ping)
    assert ping.payload == b"p"


def test_nothing_is_decoded_after_a_close() -> None:
    decoder = FrameDecoder(100)
    events = decoder.feed(raw_frame(8, struct.pack("!H", 1001) + b"bye") + raw_frame(1, b"x"))
    assert len(events) == 1
    close = events[0]
    assert isinstance(close, Close)
    assert (close.code, close.reason) == (1001, "bye")
    assert decoder.feed(raw_frame(1, b"more")) == []


def test_a_large_frame_read_in_small_pieces_is_whole() -> None:
    payload = bytes(i % 256 for i in range(300_000))
    blob = raw_frame(2, payload)
    decoder = FrameDecoder(1 << 20)
    got: list[Any] = []
    for i in range(0, len(blob), 1000):
        got.extend(decoder.feed(blob[i : i + 1000]))
    assert got == [payload]
