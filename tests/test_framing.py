"""Tests for cpuhot.qmp.framing (sans-IO QMP framing, QEMU 7.2 parity).

Every expectation in the LIVE tables below is the raw reply QEMU 7.2.22
(qemu-system-x86_64, Debian 1:7.2+dfsg-7+deb12u18+b3) sent over its QMP
socket for the given input bytes, written right after ``qmp_capabilities``.
``reply()`` turns our parser's items into the same lines: a ParseError is a
GenericError without id, a non-object value is ``QMP input must be a JSON
object``, and ``query-status`` echoes its ``id``.  QEMU is not needed to run
these tests.
"""

from __future__ import annotations

import json
import math
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cpuhot.qmp import framing
from cpuhot.qmp.framing import (
    MAX_NESTING,
    MAX_TOKEN_COUNT,
    MAX_TOKEN_SIZE,
    JSONStreamParser,
    Parsed,
    ParseError,
    encode,
)

STATUS = {"status": "prelaunch", "singlestep": False, "running": False}
QS = b'{"execute":"query-status","id":'
STATUS_LINE = '{"return": {"status": "prelaunch", "singlestep": false, "running": false}}'
NOT_OBJECT = '{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}'
M = 64 << 20


def err(desc: str) -> str:
    return '{"error": {"class": "GenericError", "desc": "' + desc + '"}}'


def status_id(id_json: str) -> str:
    return STATUS_LINE[:-1] + ', "id": ' + id_json + "}"


EXP = "JSON parse error, expecting value"
EXPECTING = err(EXP)


def reply(item: Parsed | ParseError) -> str:
    """The line QEMU sends for one item (without the CRLF)."""
    if isinstance(item, ParseError):
        out = encode({"error": {"class": "GenericError", "desc": item.desc}})
    else:
        v = item.value
        if not isinstance(v, dict):
            out = encode({"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}})
        elif v.get("execute") == "query-status" and set(v) <= {"execute", "id"}:
            r: dict = {"return": STATUS}
            if "id" in v:
                r["id"] = v["id"]
            out = encode(r)
        else:
            return "PARSED " + encode(v)[:-2].decode()
    assert out.endswith(b"\r\n") and out.count(b"\n") == 1 and out.count(b"\r") == 1
    return out[:-2].decode("ascii")


def replies(data: bytes, **kw) -> list[str]:
    return [reply(i) for i in JSONStreamParser(**kw).feed(data)]


def feed_bytewise(data: bytes, **kw) -> list:
    p = JSONStreamParser(**kw)
    out: list = []
    for i in range(len(data)):
        out += p.feed(data[i : i + 1])
    return out


# ---------------------------------------------------------------------------
# Behaviour observed live on QEMU 7.2 (input bytes -> reply lines)
# ---------------------------------------------------------------------------

LIVE: list[tuple[bytes, list[str]]] = [
    # framing / recovery
    (b'{"execute": } {"execute":"query-status"}', [EXPECTING, STATUS_LINE]),
    (b'{"execute":"query-status","id":1}{"execute":"query-status","id":2}', [status_id("1"), status_id("2")]),
    (b'  \r\n\t {"execute":"query-status"}  ', [STATUS_LINE]),
    (b'{"execute": 1!, "id": 2}', [err("JSON parse error, stray '!'"), EXPECTING, NOT_OBJECT, EXPECTING, NOT_OBJECT, EXPECTING]),
    (b'[}', [EXPECTING]),
    (b'[}]', [EXPECTING, EXPECTING]),
    (b"{]", [EXPECTING]),
    (b'{"a":[}]}', [EXPECTING, EXPECTING]),
    (b'[}]{"execute":"query-status"}', [EXPECTING, EXPECTING, STATUS_LINE]),
    (b'[1,{"a":2},[3]] [4] {"execute":"query-status","id":[1,2]}', [NOT_OBJECT, NOT_OBJECT, status_id("[1, 2]")]),
    # top-level scalars and lookahead
    (b"123", []),
    (b"123 ", [NOT_OBJECT]),
    (b"123\n", [NOT_OBJECT]),
    (b'"str"', [NOT_OBJECT]),
    (b"'sq'", [NOT_OBJECT]),
    (b"'x' ", [NOT_OBJECT]),
    (b"null ", [NOT_OBJECT]),
    (b"-0 ", [NOT_OBJECT]),
    (b'true{"execute":"query-status"}', [NOT_OBJECT, STATUS_LINE]),
    (b'"\\u0000" ', [NOT_OBJECT]),
    # lexical errors: the partial token including the bad byte is reported
    (b"\xff\xfe", [err("JSON parse error, stray '\\uFFFD'")] * 2),
    (b"\xff\xff\xff", [err("JSON parse error, stray '\\uFFFD'")] * 3),
    (b"\x00", [err("JSON parse error, stray ''")]),
    (b"\x00\x00", [err("JSON parse error, stray ''")] * 2),
    (b"\x7f", [err("JSON parse error, stray '\\u007F'")]),
    (b"%d ", [err("JSON parse error, stray '%'")]),
    (b"01 ", [err("JSON parse error, stray '01'")]),
    (b"-01 ", [err("JSON parse error, stray '-01'")]),
    (b"-x", [err("JSON parse error, stray '-x'")]),
    (b"- ", [err("JSON parse error, stray '- '")]),
    (b"1.x", [err("JSON parse error, stray '1.x'")]),
    (b"1ex", [err("JSON parse error, stray '1ex'")]),
    (b"1e+", []),
    (b"1e+ ", [err("JSON parse error, stray '1e+ '")]),
    (b"1.5.3 ", [NOT_OBJECT, err("JSON parse error, stray '.'")]),
    (b'"abc\x01', [err("JSON parse error, stray '\\\"abc\\u0001'")]),
    (b'"abc\xff', [err("JSON parse error, stray '\\\"abc\\uFFFD'")]),
    (b'"ab\x00cd" {"execute":"query-status"}', [err("JSON parse error, stray '\\\"ab'"), STATUS_LINE]),
    (b"True {\"execute\":\"query-status\"}", [err("JSON parse error, stray 'T'"), STATUS_LINE]),
    (b'\xc3\xa9\n{"execute":"query-status"}', [err("JSON parse error, stray '\\uFFFD'"), STATUS_LINE]),
    (b'\xc3\xa9{"execute":"query-status"}', [err("JSON parse error, stray '\\uFFFD'"), STATUS_LINE]),
    (b'\xc3\xa9x{"execute":"query-status"}', [err("JSON parse error, stray '\\uFFFD'"), STATUS_LINE]),
    (
        b'x\tfoo{"execute":"query-status"}',
        [err("JSON parse error, invalid keyword 'x'"), err("JSON parse error, invalid keyword 'foo'"), STATUS_LINE],
    ),
    (
        b'x\x01{"execute":"query-status"}',
        [err("JSON parse error, invalid keyword 'x'"), err("JSON parse error, stray '\\u0001'"), STATUS_LINE],
    ),
    (b"x\x0b]", [err("JSON parse error, invalid keyword 'x'"), err("JSON parse error, stray '\\u000B'"), EXPECTING]),
    (b'!x!,{"execute":"query-status"}', [err("JSON parse error, stray '!'"), EXPECTING, STATUS_LINE]),
    (b'!!!,{"execute":"query-status"}', [err("JSON parse error, stray '!'"), EXPECTING, STATUS_LINE]),
    (QS + b'"tab\tin"}', [err("JSON parse error, stray '\\\"tab\\t'"), EXPECTING]),
    (b'"\\\xff"', [err("JSON parse error, stray '\\\"\\\\\\uFFFD'")]),
    (b'"\\\x1f"', [err("JSON parse error, stray '\\\"\\\\\\u001F'")]),
    (b"[NaN]", [err("JSON parse error, stray 'N'"), EXPECTING]),
    (b"[+1]", [err("JSON parse error, stray '+'"), EXPECTING]),
    (b"[.5]", [err("JSON parse error, stray '.'"), EXPECTING]),
    (b"[0x1]", [err("JSON parse error, expected separator in list")]),
    # keywords
    (b"nonsense ", [err("JSON parse error, invalid keyword 'nonsense'")]),
    (b"nul1 ", [err("JSON parse error, invalid keyword 'nul'"), NOT_OBJECT]),
    (b'{"a":nullx}', [err("JSON parse error, invalid keyword 'nullx'")]),
    (b"{nonsense:1}", [err("JSON parse error, invalid keyword 'nonsense'")]),
    # json-parser.c messages
    (b"{1:2}", [err("JSON parse error, key is not a string in object")]),
    (b"{[]:1}", [err("JSON parse error, key is not a string in object")]),
    (b'{"a" 1}', [err("JSON parse error, missing : in object pair")]),
    (b'{"a"]', [err("JSON parse error, missing : in object pair")]),
    (b'{"a":}', [EXPECTING]),
    (b'{"a":1 "b":2}', [err("JSON parse error, expected separator in dict")]),
    (b'{"a":1]', [err("JSON parse error, expected separator in dict")]),
    (b'{"a":true1}', [err("JSON parse error, expected separator in dict")]),
    (b"[1 2]", [err("JSON parse error, expected separator in list")]),
    (b'{"a":1,}', [EXPECTING]),
    (b"[1,]", [EXPECTING]),
    (b'{"a":1,"a":2}', [err("JSON parse error, duplicate key")]),
    (b'{"a":1,"a":[1 2]}', [err("JSON parse error, expected separator in list")]),
    (b"{,}", [EXPECTING]),
    (b"[,]", [EXPECTING]),
    (b"[:]", [EXPECTING]),
    (b"{:1}", [EXPECTING]),
    (b'{"execute"::1}', [EXPECTING]),
    (b'{"execute":1:2}', [err("JSON parse error, expected separator in dict")]),
    (b":", [EXPECTING]),
    (b",", [EXPECTING]),
    (b"]", [EXPECTING]),
    (b"}", [EXPECTING]),
    (b'{"a":1}}', ['PARSED {"a": 1}', EXPECTING]),
    (b"[[]]]", [NOT_OBJECT, EXPECTING]),
    (b"[{]}", [EXPECTING]),
    (b"[-]", [err("JSON parse error, stray '-]'")]),
    (b"[1e]", [err("JSON parse error, stray '1e]'")]),
    (b"[1.]", [err("JSON parse error, stray '1.]'")]),
    (b'{"execute":"query-status","id":-}', [err("JSON parse error, stray '-}'")]),
    # strings and escapes
    (b"{'execute': 'query-status', 'id': 'single-\\'\"quotes'}", [status_id('"single-\'\\"quotes"')]),
    (QS + b'"\\x"}', [err("JSON parse error, invalid escape sequence in string")]),
    (QS + b'"\\\xc3\xa9"}', [err("JSON parse error, invalid escape sequence in string")]),
    (QS + b'"\\x\xff"}', [err("JSON parse error, stray '\\\"\\\\x\\uFFFD'"), EXPECTING]),
    (QS + b'"\xff\\x"}', [err("JSON parse error, stray '\\\"\\uFFFD'"), EXPECTING]),
    (QS + b'"\\u12G4"}', [err("JSON parse error, \\\\u12G4 is not a valid Unicode character")]),
    (QS + b'"\\u1"}', [err("JSON parse error, \\\\u1\\\" is not a valid Unicode character")]),
    (QS + b'"\\uD800"}', [err("JSON parse error, \\\\uD800 is not a valid Unicode character")]),
    (QS + b'"\\uD800\\u0041"}', [err("JSON parse error, \\\\uD800 is not a valid Unicode character")]),
    (QS + b'"\\uD800\\uD800"}', [err("JSON parse error, \\\\uD800 is not a valid Unicode character")]),
    (QS + b'"\\uD800\\"}', []),  # \" is an escaped quote: the string goes on
    (QS + b'"\\uD800\\u"}', [err("JSON parse error, \\\\uD800 is not a valid Unicode character")]),
    (QS + b'"\\uD83D\\uDE0"}', [err("JSON parse error, \\\\uD83D is not a valid Unicode character")]),
    (QS + b'"\\uDC00"}', [err("JSON parse error, \\\\uDC00 is not a valid Unicode character")]),
    (QS + b'"\\uFFFE"}', [err("JSON parse error, \\\\uFFFE is not a valid Unicode character")]),
    (QS + b'"\\uFDD0"}', [err("JSON parse error, \\\\uFDD0 is not a valid Unicode character")]),
    (QS + b'"\\uDBFF\\uDFFF"}', [err("JSON parse error, \\\\uDBFF\\\\uDFFF is not a valid Unicode character")]),
    (QS + b'"\\uDBFF\\uDFFE"}', [err("JSON parse error, \\\\uDBFF\\\\uDFFE is not a valid Unicode character")]),
    (QS + b'"\\u\xc3\xa9123"}', [err("JSON parse error, \\\\u\\u00E912 is not a valid Unicode character")]),
    (QS + b'"\\u12\xc3"}', [err("JSON parse error, \\\\u12\\uFFFD\\\" is not a valid Unicode character")]),
    (QS + b'"\\uD83D\\uDE00"}', [status_id('"\\uD83D\\uDE00"')]),
    (QS + b'"\\u00e9\\u00E9"}', [status_id('"\\u00E9\\u00E9"')]),
    (
        QS + b'"\\u0000\\u007f\\u001f/\\/\\\'\\b\\f\\n\\r\\t\\\\\\""}',
        [status_id('"\\u0000\\u007F\\u001F//\'\\b\\f\\n\\r\\t\\\\\\""')],
    ),
    (QS + b'"\xc3\xa9"}', [status_id('"\\u00E9"')]),
    (QS + b'"\xf0\x9f\x98\x80"}', [status_id('"\\uD83D\\uDE00"')]),
    (QS + b'"\xc0\x80\x7f"}', [status_id('"\\u0000\\u007F"')]),
    (QS + b'{"a\\u0000b":1}}', [status_id('{"a\\u0000b": 1}')]),
    (QS + b'"\xed\xa0\x80"}', [err("JSON parse error, invalid UTF-8 sequence in string")]),
    (QS + b'"\xef\xbf\xbe"}', [err("JSON parse error, invalid UTF-8 sequence in string")]),
    (QS + b'"\xef\xb7\x90"}', [err("JSON parse error, invalid UTF-8 sequence in string")]),
    (QS + b'"\xf0\x9f\xbf\xbf"}', [err("JSON parse error, invalid UTF-8 sequence in string")]),
    (QS + b'"\xe2\x82"}', [err("JSON parse error, invalid UTF-8 sequence in string")]),
    (QS + b'"\xf8\x88\x80\x80\x80"}', [err("JSON parse error, invalid UTF-8 sequence in string")]),
    (QS + b'"\xc1\xbf"}', [err("JSON parse error, invalid UTF-8 sequence in string")]),
    (QS + b'"\xe0\x80\xaf"}', [err("JSON parse error, invalid UTF-8 sequence in string")]),
    (QS + b'"\xf4\x90\x80\x80"}', [err("JSON parse error, invalid UTF-8 sequence in string")]),
    (QS + b'"\x80"}', [err("JSON parse error, invalid UTF-8 sequence in string")]),
    (b'"\\uD800" ', [err("JSON parse error, \\\\uD800 is not a valid Unicode character")]),
    # numbers (echoed through "id")
    (QS + b"0.1}", [status_id("0.10000000000000001")]),
    (QS + b"1e308}", [status_id("1e+308")]),
    (
        QS + b"[2.5, 1e20, -0.0, -0, 1e400, -1e400, 1e-400, 1E2, 1.5e+3, 123456789012345678901234567890]}",
        [status_id("[2.5, 1e+20, -0, 0, inf, -inf, 0, 100, 1500, 1.2345678901234568e+29]")],
    ),
    (
        QS + b"[9223372036854775807, 9223372036854775808, 18446744073709551615, "
        b"18446744073709551616, -9223372036854775808, -9223372036854775809]}",
        [
            status_id(
                "[9223372036854775807, 9223372036854775808, 18446744073709551615, "
                "1.8446744073709552e+19, -9223372036854775808, -9.2233720368547758e+18]"
            )
        ],
    ),
    (
        QS + b"[5e-324, 1.7976931348623157e308, 100, 1e16, 1e17, 123456.789, 1.0]}",
        [status_id("[4.9406564584124654e-324, 1.7976931348623157e+308, 100, 10000000000000000, 1e+17, 123456.789, 1]")],
    ),
    (
        QS + b'[true,false,null,{},[],{"a":[1,{"b":null}]}, "/", "\x7f"]}',
        [status_id('[true, false, null, {}, [], {"a": [1, {"b": null}]}, "/", "\\u007F"]')],
    ),
]


@pytest.mark.parametrize("data,expected", LIVE, ids=[repr(d)[:60] for d, _ in LIVE])
def test_live_behaviour(data: bytes, expected: list[str]) -> None:
    assert replies(data) == expected
    # byte-at-a-time feeding gives exactly the same items
    assert [reply(i) for i in feed_bytewise(data)] == expected


def _feed_limited(data: bytes, max_items: int) -> list:
    """Feed ``data`` at once, then go on with feed(b"", max_items) until nothing is left unparsed."""
    p = JSONStreamParser()
    out = p.feed(data, max_items)
    steps = [len(out)]
    while p.unparsed():
        got = p.feed(b"", max_items)
        steps.append(len(got))
        out += got
    assert max(steps) <= max_items, steps
    return out


@pytest.mark.parametrize("max_items", [1, 2, 8])
def test_max_items_parses_the_same_stream_in_steps(max_items: int) -> None:
    """The server parses at most QMP_REQ_QUEUE_LEN_MAX commands ahead: stopping at a message
    boundary after max_items items and going on later gives exactly the live items, every case
    alone and all of them in one stream."""
    for data, expected in LIVE:
        assert [reply(i) for i in _feed_limited(data, max_items)] == expected, data[:60]
    stream = b"".join(data + b"\n" for data, _ in LIVE)
    assert [reply(i) for i in _feed_limited(stream, max_items)] == replies(stream)
    p = JSONStreamParser()
    assert p.feed(b'{"execute": "a"} {"execute": "b"} {"exec', 1) == [Parsed({"execute": "a"})]
    assert p.unparsed() > 0 and p.pending() == len(b' {"execute": "b"} {"exec')
    assert p.feed(b'ute": "c"}', 1) == [Parsed({"execute": "b"})]
    assert p.feed(b"", 1) == [Parsed({"execute": "c"})]
    assert p.unparsed() == 0 and p.feed(b"", 1) == []
    garbage = b"\x01" * 1000 + b"%,%," * 100 + b"}" * 100      # an error per byte or two
    assert len(_feed_limited(garbage, max_items)) == len(JSONStreamParser().feed(garbage)) > 1000


def test_keyword_message_truncated_like_vsnprintf() -> None:
    # parse_error() formats into char message[1024]: 1023 chars after "JSON parse error, "
    (item,) = JSONStreamParser().feed(b"a" * 2000 + b" ")
    assert item == ParseError("JSON parse error, invalid keyword '" + "a" * 1006)


# ---------------------------------------------------------------------------
# Streaming / incremental behaviour
# ---------------------------------------------------------------------------


def test_incomplete_object_waits_then_completes() -> None:
    p = JSONStreamParser()
    assert p.feed(b'{"execute": "query-status"\n') == []
    assert p.pending() > 0
    assert p.feed(b"}") == [Parsed({"execute": "query-status"})]
    assert p.pending() == 0


def test_no_newline_needed_and_values_in_order() -> None:
    p = JSONStreamParser()
    assert p.feed(b'{"a":1}[2]"x" 3{"b":4}') == [
        Parsed({"a": 1}),
        Parsed([2]),
        Parsed("x"),
        Parsed(3),
        Parsed({"b": 4}),
    ]


def test_bare_number_needs_a_delimiter() -> None:
    p = JSONStreamParser()
    assert p.feed(b"42") == []
    assert p.pending() == 2
    assert p.feed(b"7") == []
    assert p.feed(b"\n") == [Parsed(427)]
    assert p.feed(b"true") == []  # keywords need lookahead too
    assert p.feed(b",") == [Parsed(True), ParseError("JSON parse error, expecting value")]


def test_one_byte_at_a_time_command() -> None:
    data = b'{"execute":"query-status","arguments":{"x":[1,2.5,"\\u00e9",null]},"id":"a"}'
    items = feed_bytewise(data)
    assert items == [
        Parsed({"execute": "query-status", "arguments": {"x": [1, 2.5, "\u00e9", None]}, "id": "a"})
    ]


def test_split_inside_escape_and_utf8() -> None:
    data = QS + b'"\\uD83D\\uDE00\xc3\xa9\\n"}'
    for cut in range(len(data) + 1):
        p = JSONStreamParser()
        items = p.feed(data[:cut]) + p.feed(data[cut:])
        assert items == [Parsed({"execute": "query-status", "id": "\U0001F600\u00e9\n"})], cut


def test_value_types() -> None:
    (item,) = JSONStreamParser().feed(
        b'{"i": -5, "u": 18446744073709551615, "big": 18446744073709551616, "f": 1.5, '
        b'"inf": 1e400, "t": true, "n": null, "s": \'q\', "l": []}'
    )
    v = item.value
    assert type(v["i"]) is int and type(v["u"]) is int and v["u"] == 2**64 - 1
    assert type(v["big"]) is float and v["big"] == 2.0**64
    assert v["f"] == 1.5 and v["inf"] == math.inf
    assert v["t"] is True and v["n"] is None and v["s"] == "q" and v["l"] == []


def test_nul_via_modified_utf8_and_escape() -> None:
    (item,) = JSONStreamParser().feed(b'["\xc0\x80", "\\u0000"] ')
    assert item == Parsed(["\x00", "\x00"])


def test_huge_integer_literal_is_a_float() -> None:
    (item,) = JSONStreamParser().feed(b"[" + b"9" * 5000 + b"]")
    assert item == Parsed([math.inf])


# ---------------------------------------------------------------------------
# Limits (json-streamer.c / json-lexer.c)
# ---------------------------------------------------------------------------


def test_nesting_1024_ok_1025_error_then_expecting_value() -> None:
    assert replies(b"[" * 1024 + b"]" * 1024) == [NOT_OBJECT]
    assert replies(QS + b"[" * 1023 + b"]" * 1023 + b"}") == [
        status_id("[" * 1023 + "]" * 1023)
    ]
    assert replies(QS + b"[" * 1024 + b"]" * 1024 + b"}") == [
        err("JSON nesting depth limit exceeded")
    ] + [EXPECTING] * 1025
    assert replies(b"[" * 1025 + b"]" * 1025) == [err("JSON nesting depth limit exceeded")] + [EXPECTING] * 1025
    assert replies(b"[" * 1025) == [err("JSON nesting depth limit exceeded")]
    assert replies(b"[{" * 600) == [err("JSON nesting depth limit exceeded")]
    p = JSONStreamParser()
    assert p.feed(b"[" * 1025) == [ParseError("JSON nesting depth limit exceeded")]
    assert p.feed(b"]") == [ParseError("JSON parse error, expecting value")]


def test_nested_objects_limit() -> None:
    assert replies(b'{"a":' * 1024 + b"1" + b"}" * 1024) == ["PARSED " + '{"a": ' * 1024 + "1" + "}" * 1024]
    assert replies(b'{"a":' * 1025 + b"1" + b"}" * 1025) == [
        err("JSON nesting depth limit exceeded"),
        NOT_OBJECT,
        EXPECTING,
        NOT_OBJECT,
    ] + [EXPECTING] * 1025


def test_token_count_limit_live_boundaries() -> None:
    k = 1048575
    # 2097152 tokens: fine
    assert replies(b"[[]" + b",1" * (k - 1) + b"]") == [NOT_OBJECT]
    # 2097153 tokens: the last one is refused
    assert replies(b"[1" + b",1" * k + b"]") == [err("JSON token count limit exceeded")]
    assert replies(b"[1" + b",1" * k + b",1,1]") == [
        err("JSON token count limit exceeded"),
        NOT_OBJECT,
        EXPECTING,
        NOT_OBJECT,
        EXPECTING,
    ]


@pytest.mark.parametrize(
    "n,tail,expected",
    [
        # total token bytes + 1 > 64 MiB is refused; tokens before the string are 31 bytes
        (M - 35, b'"}', ["ok"]),
        (M - 34, b'"}', [err("JSON token size limit exceeded")]),
        (M - 33, b'"}', [err("JSON token size limit exceeded"), EXPECTING]),
        (M - 1, b'"}', [err("JSON token size limit exceeded"), EXPECTING]),
        # the lexer cuts a token at 64 MiB + 1 bytes and restarts lexing right there
        (M, b'"}', [err("JSON token size limit exceeded")]),
        (
            M + 5,
            b'"}x"\n{"execute":"query-status"}',
            [err("JSON token size limit exceeded"), err("JSON parse error, invalid keyword 'aaaaa'"), NOT_OBJECT, STATUS_LINE],
        ),
    ],
)
def test_token_size_limit_live_boundaries(n: int, tail: bytes, expected: list[str]) -> None:
    p = JSONStreamParser()
    items = p.feed(QS + b'"' + b"a" * n + tail)
    if expected == ["ok"]:
        assert len(items) == 1 and items[0].value["id"] == "a" * n
    else:
        assert [reply(i) for i in items] == expected
    assert p.pending() <= MAX_TOKEN_SIZE + 1


def test_oversized_string_fed_in_chunks_stays_bounded() -> None:
    p = JSONStreamParser(max_token_size=1000)
    out = p.feed(b'{"x":"')
    for _ in range(100):
        out += p.feed(b"b" * 97)
        assert p.pending() <= 1001
    assert out[0] == ParseError("JSON token size limit exceeded")


@pytest.mark.parametrize(
    "kw,data,expected",
    [
        ({"max_nesting": 2}, b"[[1]]", [Parsed([[1]])]),
        ({"max_nesting": 2}, b"[[[1]]]", [ParseError(framing.ERR_NESTING), Parsed(1)] + [ParseError(EXP)] * 3),
        ({"max_token_count": 3}, b"[1]", [Parsed([1])]),
        ({"max_token_count": 3}, b"[1,2]", [ParseError(framing.ERR_TOKEN_COUNT), ParseError(EXP)]),
        # token bytes: '[' 1 + string + ']' 1, plus one, must not exceed the limit
        ({"max_token_size": 10}, b'["abcde"]', [Parsed(["abcde"])]),
        ({"max_token_size": 10}, b'["abcdef"]', [ParseError(framing.ERR_TOKEN_SIZE)]),
        ({"max_token_size": 10}, b'["abcdefg"]', [ParseError(framing.ERR_TOKEN_SIZE), ParseError(EXP)]),
        # the lexer cuts the 11th byte of a token; the final quote then opens a new string
        ({"max_token_size": 10}, b'"abcdefghij"', [ParseError(framing.ERR_TOKEN_SIZE)]),
    ],
)
def test_configurable_limits(kw: dict, data: bytes, expected: list) -> None:
    assert JSONStreamParser(**kw).feed(data) == expected
    assert feed_bytewise(data, **kw) == expected


# ---------------------------------------------------------------------------
# encode(): QEMU's writer, checked by echoing ids
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "obj,wire",
    [
        ({"return": {}, "id": 1}, b'{"return": {}, "id": 1}\r\n'),
        ([1, 2], b"[1, 2]\r\n"),
        ({}, b"{}\r\n"),
        ([], b"[]\r\n"),
        ({"a": [True, False, None]}, b'{"a": [true, false, null]}\r\n'),
        (0.1, b"0.10000000000000001\r\n"),
        (2.5, b"2.5\r\n"),
        (1e20, b"1e+20\r\n"),
        (-0.0, b"-0\r\n"),
        (1.0, b"1\r\n"),
        (1e16, b"10000000000000000\r\n"),
        (1e17, b"1e+17\r\n"),
        (5e-324, b"4.9406564584124654e-324\r\n"),
        (math.inf, b"inf\r\n"),
        (-math.inf, b"-inf\r\n"),
        (math.nan, b"nan\r\n"),
        (12345678901234567890, b"12345678901234567890\r\n"),
        (-(2**63), b"-9223372036854775808\r\n"),
        ("/\x7f", b'"/\\u007F"\r\n'),
        ("\"\\\b\f\n\r\t\x00\x1f", b'"\\"\\\\\\b\\f\\n\\r\\t\\u0000\\u001F"\r\n'),
        ("\u00e9\uffff\U0001F600", b'"\\u00E9\\uFFFD\\uD83D\\uDE00"\r\n'),
        ("\ud800", b'"\\uFFFD"\r\n'),
        ({"k\u00e9": "'"}, b'{"k\\u00E9": "\'"}\r\n'),
        ((1, "a"), b'[1, "a"]\r\n'),
    ],
)
def test_encode(obj: object, wire: bytes) -> None:
    assert encode(obj) == wire


def test_encode_error_reply_and_deep_nesting() -> None:
    assert encode({"id": "x", "error": {"class": "GenericError", "desc": "JSON parse error, stray '\ufffd'"}}) == (
        b'{"id": "x", "error": {"class": "GenericError", "desc": "JSON parse error, stray \'\\uFFFD\'"}}\r\n'
    )
    deep: list = []
    for _ in range(3000):
        deep = [deep]
    assert encode(deep) == b"[" * 3000 + b"[]" + b"]" * 3000 + b"\r\n"


def test_encode_rejects_non_json() -> None:
    with pytest.raises(TypeError):
        encode({1: 2})
    with pytest.raises(TypeError):
        encode(object())


# ---------------------------------------------------------------------------
# Reference model: a literal, per-byte port of json-lexer.c, json-streamer.c
# and json-parser.c (token queue + recursive descent), independent of the
# optimised implementation (fast path, regex runs, push parser).
# ---------------------------------------------------------------------------

_WS = b" \t\r\n"
_DIG = b"0123456789"
_LOWER = bytes(range(ord("a"), ord("z") + 1))


def _model_step(state: str, c: int) -> tuple[str, bool]:
    """(new state or 'T_<TYPE>' / 'ERROR', char consumed)"""
    if state == "start":
        if c in _WS:
            return "start", True
        if c == 0x22:
            return "dq", True
        if c == 0x27:
            return "sq", True
        if c == 0x30:
            return "zero", True
        if c in b"123456789":
            return "digits", True
        if c == 0x2D:
            return "sign", True
        if c in b"{}[]:,":
            return "T_" + chr(c), True
        if c in _LOWER:
            return "keyword", True
        return "ERROR", True
    if state == "recovery":
        if c in b"[]{}:," or (c < 0x20 and c != 0x09) or c >= 0xFE:
            return "start", False
        return "recovery", True
    if state in ("dq", "sq"):
        if c == (0x22 if state == "dq" else 0x27):
            return "T_STRING", True
        if c == 0x5C:
            return state + "_esc", True
        return (state, True) if 0x20 <= c <= 0xFD else ("ERROR", True)
    if state in ("dq_esc", "sq_esc"):
        return (state[:2], True) if 0x20 <= c <= 0xFD else ("ERROR", True)
    if state == "zero":
        if c in _DIG:
            return "ERROR", True
        return ("mant", True) if c == 0x2E else ("T_INTEGER", False)
    if state == "digits":
        if c in _DIG:
            return "digits", True
        if c in b"eE":
            return "exp_e", True
        return ("mant", True) if c == 0x2E else ("T_INTEGER", False)
    if state == "sign":
        if c == 0x30:
            return "zero", True
        return ("digits", True) if c in b"123456789" else ("ERROR", True)
    if state == "mant":
        return ("mant_digits", True) if c in _DIG else ("ERROR", True)
    if state == "mant_digits":
        if c in _DIG:
            return "mant_digits", True
        return ("exp_e", True) if c in b"eE" else ("T_FLOAT", False)
    if state == "exp_e":
        if c in b"+-":
            return "exp_sign", True
        return ("exp_digits", True) if c in _DIG else ("ERROR", True)
    if state == "exp_sign":
        return ("exp_digits", True) if c in _DIG else ("ERROR", True)
    if state == "exp_digits":
        return ("exp_digits", True) if c in _DIG else ("T_FLOAT", False)
    if state == "keyword":
        return ("keyword", True) if c in _LOWER else ("T_KEYWORD", False)
    raise AssertionError(state)


_FAIL = object()


def _model_parse(tokens: list[tuple[str, bytes]]) -> Parsed | ParseError:
    pos = 0
    error: list[str] = []

    def fail(msg: str) -> object:
        if not error:
            error.append(msg)
        return _FAIL

    def peek():
        return tokens[pos] if pos < len(tokens) else None

    def pop():
        nonlocal pos
        tok = peek()
        pos += 1
        return tok

    def parse_pair(d: dict) -> bool:
        if peek() is None:
            fail(framing.ERR_PREMATURE_EOI)
            return False
        key = parse_value()
        if not isinstance(key, str):  # also _FAIL
            fail(framing.ERR_KEY_NOT_STRING)
            return False
        tok = pop()
        if tok is None:
            fail(framing.ERR_PREMATURE_EOI)
            return False
        if tok[0] != ":":
            fail(framing.ERR_MISSING_COLON)
            return False
        value = parse_value()
        if value is _FAIL:
            fail("JSON parse error, Missing value in dict")
            return False
        if key in d:
            fail(framing.ERR_DUPLICATE_KEY)
            return False
        d[key] = value
        return True

    def parse_object() -> object:
        pop()
        d: dict = {}
        if peek() is None:
            return fail(framing.ERR_PREMATURE_EOI)
        if peek()[0] == "}":
            pop()
            return d
        if not parse_pair(d):
            return _FAIL
        tok = pop()
        while True:
            if tok is None:
                return fail(framing.ERR_PREMATURE_EOI)
            if tok[0] == "}":
                return d
            if tok[0] != ",":
                return fail(framing.ERR_DICT_SEPARATOR)
            if not parse_pair(d):
                return _FAIL
            tok = pop()

    def parse_array() -> object:
        pop()
        lst: list = []
        if peek() is None:
            return fail(framing.ERR_PREMATURE_EOI)
        if peek()[0] == "]":
            pop()
            return lst
        while True:
            v = parse_value()
            if v is _FAIL:
                return fail(framing.ERR_EXPECTING_VALUE)
            lst.append(v)
            tok = pop()
            if tok is None:
                return fail(framing.ERR_PREMATURE_EOI)
            if tok[0] == "]":
                return lst
            if tok[0] != ",":
                return fail(framing.ERR_LIST_SEPARATOR)

    def parse_value() -> object:
        tok = peek()
        if tok is None:
            return fail(framing.ERR_PREMATURE_EOI)
        kind, text = tok
        if kind == "{":
            return parse_object()
        if kind == "[":
            return parse_array()
        if kind in ("STRING", "INTEGER", "FLOAT", "KEYWORD"):
            pop()
            if kind == "STRING":
                v, e = framing._parse_string(text)
            elif kind == "INTEGER":
                v, e = framing._qint(text.decode()), None
            elif kind == "FLOAT":
                v, e = float(text), None
            else:
                v, e = framing._parse_keyword(text)
            return fail(e) if e is not None else v
        return fail(framing.ERR_EXPECTING_VALUE)

    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, 20000))
    try:
        result = parse_value()
    finally:
        sys.setrecursionlimit(old)
    if error:
        return ParseError(error[0])
    return Parsed(result)


class ModelParser:
    def __init__(self, max_nesting: int = MAX_NESTING, max_token_size: int = MAX_TOKEN_SIZE,
                 max_token_count: int = MAX_TOKEN_COUNT) -> None:
        self.max_nesting, self.max_token_size, self.max_token_count = max_nesting, max_token_size, max_token_count
        self.state = "start"
        self.token = bytearray()
        self.tokens: list[tuple[str, bytes]] = []
        self.brace = self.bracket = self.token_size = 0
        self.out: list = []

    def feed(self, data: bytes) -> list:
        self.out = []
        for c in data:
            self.feed_char(c)
        return self.out

    def feed_char(self, c: int) -> None:
        consumed = False
        while not consumed:
            new, consumed = _model_step(self.state, c)
            if consumed:
                self.token.append(c)
            if new.startswith("T_"):
                self.process(new[2:], bytes(self.token))
                new = "start"
                self.token.clear()
            elif new == "ERROR":
                self.process("ERROR", bytes(self.token))
                new = "recovery"
                self.token.clear()
            elif new in ("start", "recovery"):
                self.token.clear()
            self.state = new
        if len(self.token) > self.max_token_size:
            self.process("OVERSIZE", bytes(self.token))
            self.token.clear()
            self.state = "start"

    def reset(self) -> None:
        self.brace = self.bracket = self.token_size = 0
        self.tokens = []

    def process(self, kind: str, text: bytes) -> None:
        if kind == "{":
            self.brace += 1
        elif kind == "}":
            self.brace -= 1
        elif kind == "[":
            self.bracket += 1
        elif kind == "]":
            self.bracket -= 1
        elif kind == "ERROR":
            self.out.append(ParseError(framing._writer_text(
                b"JSON parse error, stray '" + text.split(b"\0")[0] + b"'")))
            self.reset()
            return
        if self.token_size + len(text) + 1 > self.max_token_size:
            self.out.append(ParseError("JSON token size limit exceeded"))
        elif len(self.tokens) + 1 > self.max_token_count:
            self.out.append(ParseError("JSON token count limit exceeded"))
        elif self.bracket + self.brace > self.max_nesting:
            self.out.append(ParseError("JSON nesting depth limit exceeded"))
        else:
            self.tokens.append((kind, text))
            self.token_size += len(text)
            if (self.brace > 0 or self.bracket > 0) and self.brace >= 0 and self.bracket >= 0:
                return
            self.out.append(_model_parse(self.tokens))
        self.reset()


@pytest.mark.parametrize("data,expected", LIVE, ids=[repr(d)[:60] for d, _ in LIVE])
def test_model_agrees_with_live(data: bytes, expected: list[str]) -> None:
    assert [reply(i) for i in ModelParser().feed(data)] == expected


# ---------------------------------------------------------------------------
# Hypothesis properties
# ---------------------------------------------------------------------------

FRAGMENTS = [
    b'{"execute":"query-status"}', b'{"execute":"query-status","id":7}', b"{", b"}", b"[", b"]", b":", b",",
    b'"abc"', b"'x'", b'"a\\"b"', b"'a\\'b\"'", b"0", b"-1", b"1.5e3", b"01", b"1.", b"-", b"1e", b"1E+2",
    b"true", b"null", b"false", b"foo", b"Nul", b" ", b"\n", b"\r\n", b"\t", b'"\\u00e9"', b'"\\uD800"',
    b'"\\uD83D\\uDE00"', b'"\\uDBFF\\uDFFF"', b'"\\x"', b'"\xc3\xa9"', b'"\xff"', b"\xff", b"\xfe", b"\x00",
    b"\x01", b"\x7f", b'"\x01"', b'"', b"'", b"\\", b'"\\', b"%", b"!", b'{"a":1}', b"[1,2]",
    b'{"a":1,"a":2}', b'"\xe2\x82"', b"\xc3", b'"\xc0\x80"', b"12345678901234567890123", b'"\\u12"', b"\x0b",
    b'{"k":[1,{"z":null}]}', b"[[[[", b"]]]]", b"{{", b"}}",
]

fragment_streams = st.lists(
    st.one_of(st.sampled_from(FRAGMENTS), st.binary(min_size=1, max_size=4)), max_size=40
).map(b"".join)


def _feed_split(p: JSONStreamParser, data: bytes, cuts: list[int]) -> list:
    out: list = []
    prev = 0
    for c in sorted(set(cuts)) + [len(data)]:
        out += p.feed(data[prev:c])
        prev = c
    return out


def _same(a: list, b: list) -> bool:
    """Item lists equal, with floats compared bit-for-bit (inf, -0.0)."""
    return json.dumps([repr(x) for x in a]) == json.dumps([repr(x) for x in b])


json_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)).filter(lambda c: framing._valid_codepoint(ord(c))),
    max_size=12,
)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    json_text,
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(st.lists(children, max_size=5), st.dictionaries(json_text, children, max_size=5)),
    max_leaves=25,
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(value=json_values, data=st.data())
def test_prop_roundtrip_split_anywhere(value: object, data: st.DataObject) -> None:
    for wire in (
        encode(value),
        json.dumps(value, ensure_ascii=False).encode() + b"\n",
        json.dumps(value, separators=(",", ":")).encode() + b" ",
    ):
        cuts = data.draw(st.lists(st.integers(0, len(wire)), max_size=8))
        items = _feed_split(JSONStreamParser(), wire, cuts)
        assert len(items) == 1 and isinstance(items[0], Parsed)
        assert items[0].value == value


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(garbage=st.one_of(st.binary(max_size=64), fragment_streams), data=st.data())
def test_prop_garbage_never_raises_and_resync(garbage: bytes, data: st.DataObject) -> None:
    p = JSONStreamParser()
    cuts = data.draw(st.lists(st.integers(0, len(garbage)), max_size=6))
    items = _feed_split(p, garbage, cuts)
    assert all(isinstance(i, (Parsed, ParseError)) for i in items)
    assert p.pending() <= len(garbage)
    # QEMU's documented resynchronisation: a byte that is an error in every
    # lexer state (0xFE, 0xFF, or a control character other than TAB/CR/LF)
    # always ends in a "stray" error that resets the streamer; the lexer then
    # restarts at the next structural character, line break or control byte.
    sync = data.draw(st.sampled_from([b"\xff", b"\xfe", b"\x00", b"\x01", b"\x1b", b"\x0b"]))
    cmd = b'{"execute":"query-status","id":"after-garbage"}'
    tail = p.feed(sync + b"\n" + cmd)
    assert tail[-1] == Parsed({"execute": "query-status", "id": "after-garbage"})
    assert isinstance(tail[-2], ParseError) and tail[-2].desc.startswith("JSON parse error, stray '")
    assert p.pending() == 0


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(stream=st.one_of(fragment_streams, st.binary(max_size=80)), data=st.data())
def test_prop_matches_reference_model(stream: bytes, data: st.DataObject) -> None:
    small = data.draw(st.booleans())
    kw = {}
    if small:
        kw = {
            "max_nesting": data.draw(st.integers(1, 6)),
            "max_token_size": data.draw(st.integers(1, 40)),
            "max_token_count": data.draw(st.integers(1, 12)),
        }
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=10))
    got = _feed_split(JSONStreamParser(**kw), stream, cuts)
    want = ModelParser(**kw).feed(stream)
    assert _same(got, want)


@settings(max_examples=300)
@given(value=json_values)
def test_prop_encode_roundtrips_through_json_loads(value: object) -> None:
    wire = encode(value)
    assert wire.endswith(b"\r\n") and b"\n" not in wire[:-2] and b"\r" not in wire[:-2]
    assert wire.isascii()
    assert json.loads(wire) == value
    # and QEMU's own parser reads it back too
    assert JSONStreamParser().feed(wire) == [Parsed(value)]


@settings(max_examples=200)
@given(text=st.text(max_size=20))
def test_prop_encode_any_str_is_valid_ascii_json(text: str) -> None:
    wire = encode(text)
    decoded = json.loads(wire)
    # QEMU cannot hold surrogates/noncharacters: its writer prints U+FFFD
    assert decoded == "".join(c if framing._valid_codepoint(ord(c)) else "\ufffd" for c in text)
