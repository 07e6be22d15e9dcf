"""Sans-IO QMP framing: QEMU 7.2's JSON lexer/streamer/parser and JSON writer.

This module turns a raw byte stream into complete JSON values (or parse
errors) exactly the way QEMU 7.2's ``qobject/json-lexer.c``,
``qobject/json-streamer.c`` and ``qobject/json-parser.c`` do, and formats
outgoing messages exactly like ``qobject/json-writer.c`` plus the monitor's
``\\n`` -> ``\\r\\n`` translation.  Everything here was checked byte for byte
against a live ``qemu-system-x86_64`` 7.2 over its QMP socket.

No sockets, no asyncio: feed bytes in, get items out.

Summary of QEMU's rules (all reproduced here):

* The lexer is a byte-oriented state machine.  Tokens: ``{ } [ ] : ,``,
  strings in double *or single* quotes, numbers (RFC 8259 grammar), and
  keywords ``[a-z]+``.  Whitespace is space, tab, CR, LF.  Numbers and
  keywords need a following byte to end, so a bare top-level ``123`` waits
  until e.g. a space or newline arrives.
* A byte that cannot continue/start a token is a lexical error: the partial
  token *including* the bad byte is reported as
  ``JSON parse error, stray '<token>'`` (cut at a NUL byte, invalid UTF-8
  shown as U+FFFD by the writer).  The lexer then skips input until a
  structural character (``[ ] { } : ,``), an ASCII control character other
  than TAB, or a byte 0xFE/0xFF, and restarts there.
* The streamer counts braces and brackets and hands the collected tokens to
  the parser when both counts are back to zero or one goes negative (so
  ``}`` or ``]`` alone is a complete, erroneous message).  Any error resets
  the streamer: every token of the incomplete message collected so far is
  discarded.
* Limits (checked for every token before it is queued, in this order):
  total token bytes of a message + 1 > 64 MiB -> ``JSON token size limit
  exceeded``; more than 2 Mi tokens -> ``JSON token count limit exceeded``;
  brace + bracket depth > 1024 -> ``JSON nesting depth limit exceeded``.
  A single token longer than 64 MiB is cut by the lexer (same message) and
  lexing restarts right after the cut.
* Strings are validated as (modified) UTF-8: invalid sequences,
  surrogates and the 66 Unicode noncharacters are rejected; ``\\xC0\\x80``
  means U+0000.  Escapes: ``\\" \\' \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX``
  (surrogate pairs combine).
* Integers become ``int`` when they fit int64 or (non-negative) uint64,
  otherwise ``float`` (``strtod``; ``1e400`` -> ``inf``).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, NamedTuple

__all__ = [
    "Parsed",
    "ParseError",
    "JSONStreamParser",
    "encode",
    "MAX_TOKEN_SIZE",
    "MAX_TOKEN_COUNT",
    "MAX_NESTING",
]

#: json-streamer.c / json-lexer.c limits in QEMU 7.2
MAX_TOKEN_SIZE = 64 << 20
MAX_TOKEN_COUNT = 2 << 20
MAX_NESTING = 1 << 10


class Parsed(NamedTuple):
    """One complete top-level JSON value."""

    value: object


class ParseError(NamedTuple):
    """A lexing/parsing error; QEMU answers it with a GenericError (no id)."""

    desc: str


# ---------------------------------------------------------------------------
# Error texts (qobject/json-streamer.c, qobject/json-parser.c)
# ---------------------------------------------------------------------------

ERR_TOKEN_SIZE = "JSON token size limit exceeded"
ERR_TOKEN_COUNT = "JSON token count limit exceeded"
ERR_NESTING = "JSON nesting depth limit exceeded"
ERR_EXPECTING_VALUE = "JSON parse error, expecting value"
ERR_KEY_NOT_STRING = "JSON parse error, key is not a string in object"
ERR_MISSING_COLON = "JSON parse error, missing : in object pair"
ERR_DUPLICATE_KEY = "JSON parse error, duplicate key"
ERR_DICT_SEPARATOR = "JSON parse error, expected separator in dict"
ERR_LIST_SEPARATOR = "JSON parse error, expected separator in list"
ERR_INVALID_ESCAPE = "JSON parse error, invalid escape sequence in string"
ERR_INVALID_UTF8 = "JSON parse error, invalid UTF-8 sequence in string"
#: unreachable through QMP (the streamer only emits balanced messages), kept for parity
ERR_PREMATURE_EOI = "JSON parse error, premature EOI"

_PARSE_ERROR_PREFIX = b"JSON parse error, "
_PARSE_MESSAGE_MAX = 1023  # parse_error() formats into char message[1024]

# ---------------------------------------------------------------------------
# Lexer tables (qobject/json-lexer.c, QEMU 7.2)
# ---------------------------------------------------------------------------

JSON_ERROR = 0
IN_RECOVERY = 1
IN_DQ_STRING_ESCAPE = 2
IN_DQ_STRING = 3
IN_SQ_STRING_ESCAPE = 4
IN_SQ_STRING = 5
IN_ZERO = 6
IN_EXP_DIGITS = 7
IN_EXP_SIGN = 8
IN_EXP_E = 9
IN_MANTISSA = 10
IN_MANTISSA_DIGITS = 11
IN_DIGITS = 12
IN_SIGN = 13
IN_KEYWORD = 14
IN_START = 15
_N_STATES = 16

JSON_LCURLY = 100
JSON_RCURLY = 101
JSON_LSQUARE = 102
JSON_RSQUARE = 103
JSON_COLON = 104
JSON_COMMA = 105
JSON_INTEGER = 106
JSON_FLOAT = 107
JSON_KEYWORD = 108
JSON_STRING = 109
_JSON_OVERSIZE = 120  # lexer cut an over-long token (QEMU passes its lexer state)
_JSON_MIN = JSON_LCURLY

_LOOKAHEAD = 0x80


def _build_lexer_table() -> list[list[int]]:
    t = [[JSON_ERROR] * 256 for _ in range(_N_STATES)]

    def rng(state: int, lo: int, hi: int, val: int) -> None:
        for b in range(lo, hi + 1):
            t[state][b] = val

    def ch(state: int, chars: str, val: int) -> None:
        for c in chars:
            t[state][ord(c)] = val

    def terminal(state: int, tok: int) -> None:
        rng(state, 0, 0xFF, tok | _LOOKAHEAD)

    # error recovery
    rng(IN_RECOVERY, 0, 0x1F, IN_START | _LOOKAHEAD)
    rng(IN_RECOVERY, 0x20, 0xFD, IN_RECOVERY)
    rng(IN_RECOVERY, 0xFE, 0xFF, IN_START | _LOOKAHEAD)
    ch(IN_RECOVERY, "\t", IN_RECOVERY)
    ch(IN_RECOVERY, "[]{}:,", IN_START | _LOOKAHEAD)
    # double quote string
    rng(IN_DQ_STRING_ESCAPE, 0x20, 0xFD, IN_DQ_STRING)
    rng(IN_DQ_STRING, 0x20, 0xFD, IN_DQ_STRING)
    ch(IN_DQ_STRING, "\\", IN_DQ_STRING_ESCAPE)
    ch(IN_DQ_STRING, '"', JSON_STRING)
    # single quote string
    rng(IN_SQ_STRING_ESCAPE, 0x20, 0xFD, IN_SQ_STRING)
    rng(IN_SQ_STRING, 0x20, 0xFD, IN_SQ_STRING)
    ch(IN_SQ_STRING, "\\", IN_SQ_STRING_ESCAPE)
    ch(IN_SQ_STRING, "'", JSON_STRING)
    # zero
    terminal(IN_ZERO, JSON_INTEGER)
    ch(IN_ZERO, "0123456789", JSON_ERROR)
    ch(IN_ZERO, ".", IN_MANTISSA)
    # float
    terminal(IN_EXP_DIGITS, JSON_FLOAT)
    ch(IN_EXP_DIGITS, "0123456789", IN_EXP_DIGITS)
    ch(IN_EXP_SIGN, "0123456789", IN_EXP_DIGITS)
    ch(IN_EXP_E, "-+", IN_EXP_SIGN)
    ch(IN_EXP_E, "0123456789", IN_EXP_DIGITS)
    terminal(IN_MANTISSA_DIGITS, JSON_FLOAT)
    ch(IN_MANTISSA_DIGITS, "0123456789", IN_MANTISSA_DIGITS)
    ch(IN_MANTISSA_DIGITS, "eE", IN_EXP_E)
    ch(IN_MANTISSA, "0123456789", IN_MANTISSA_DIGITS)
    # number
    terminal(IN_DIGITS, JSON_INTEGER)
    ch(IN_DIGITS, "0123456789", IN_DIGITS)
    ch(IN_DIGITS, "eE", IN_EXP_E)
    ch(IN_DIGITS, ".", IN_MANTISSA)
    ch(IN_SIGN, "0", IN_ZERO)
    ch(IN_SIGN, "123456789", IN_DIGITS)
    # keywords
    terminal(IN_KEYWORD, JSON_KEYWORD)
    rng(IN_KEYWORD, ord("a"), ord("z"), IN_KEYWORD)
    # start (QMP never enables interpolation, so '%' is an error)
    ch(IN_START, '"', IN_DQ_STRING)
    ch(IN_START, "'", IN_SQ_STRING)
    ch(IN_START, "0", IN_ZERO)
    ch(IN_START, "123456789", IN_DIGITS)
    ch(IN_START, "-", IN_SIGN)
    ch(IN_START, "{", JSON_LCURLY)
    ch(IN_START, "}", JSON_RCURLY)
    ch(IN_START, "[", JSON_LSQUARE)
    ch(IN_START, "]", JSON_RSQUARE)
    ch(IN_START, ",", JSON_COMMA)
    ch(IN_START, ":", JSON_COLON)
    rng(IN_START, ord("a"), ord("z"), IN_KEYWORD)
    ch(IN_START, " \t\r\n", IN_START)
    return t


_TABLE = _build_lexer_table()

# Self-loop runs per state, skipped with one regex match (pure speed-up; the
# table above stays the reference).  Strings also swallow complete escape
# pairs, which keeps the state at IN_xQ_STRING.
_RUNS: list[re.Pattern[bytes] | None] = [None] * _N_STATES
_RUNS[IN_START] = re.compile(rb"[ \t\r\n]*")
_RUNS[IN_RECOVERY] = re.compile(rb"[^\x00-\x08\x0a-\x1f\xfe\xff\[\]{}:,]*")
_RUNS[IN_DQ_STRING] = re.compile(rb'(?:[^"\\\x00-\x1f\xfe\xff]++|\\[\x20-\xfd])*+')
_RUNS[IN_SQ_STRING] = re.compile(rb"(?:[^'\\\x00-\x1f\xfe\xff]++|\\[\x20-\xfd])*+")
_RUNS[IN_DIGITS] = re.compile(rb"[0-9]*")
_RUNS[IN_MANTISSA_DIGITS] = _RUNS[IN_DIGITS]
_RUNS[IN_EXP_DIGITS] = _RUNS[IN_DIGITS]
_RUNS[IN_KEYWORD] = re.compile(rb"[a-z]*")

# ---------------------------------------------------------------------------
# Modified UTF-8 helpers (util/unicode.c)
# ---------------------------------------------------------------------------

_NONCHAR_CLASS = "\ufdd0-\ufdef" + "".join(
    chr(plane << 16 | 0xFFFE) + chr(plane << 16 | 0xFFFF) for plane in range(17)
)
_NONCHAR_RE = re.compile("[" + _NONCHAR_CLASS + "]")
_MIN_CP = (0x80, 0x800, 0x10000, 0x200000, 0x4000000)


def _valid_codepoint(cp: int) -> bool:
    return (
        0 <= cp <= 0x10FFFF
        and not (0xFDD0 <= cp <= 0xFDEF)
        and (cp & 0xFFFE) != 0xFFFE
        and not (0xD800 <= cp <= 0xDFFF)
    )


def _mod_utf8_codepoint(b: bytes, i: int) -> tuple[int, int]:
    """Port of mod_utf8_codepoint(): (codepoint or -1, end index)."""
    n = len(b)
    byte = b[i]
    if byte < 0x80:
        return byte, i + 1
    if byte >= 0xFE or not byte & 0x40:
        return -1, i + 1
    length = 0
    mask = 0x80
    while byte & mask:
        length += 1
        mask >>= 1
    cp = byte & (mask - 1)
    j = i + 1
    for _ in range(1, length):
        if j >= n or (b[j] & 0xC0) != 0x80:
            return -1, j
        cp = (cp << 6) | (b[j] & 0x3F)
        j += 1
    if not _valid_codepoint(cp):
        return -1, j
    if cp < _MIN_CP[length - 2] and not (cp == 0 and length == 2):
        return -1, j
    return cp, j


def _decode_strict(seg: bytes) -> str | None:
    """Decode a string segment QEMU's way; None if QEMU rejects it."""
    if seg.isascii():
        return seg.decode("ascii")
    try:
        s = seg.replace(b"\xc0\x80", b"\x00").decode("utf-8")
    except UnicodeDecodeError:
        return None
    if _NONCHAR_RE.search(s):
        return None
    return s


def _writer_text(b: bytes) -> str:
    """What QEMU's JSON writer makes of a C string: every invalid
    (modified) UTF-8 sequence becomes one U+FFFD."""
    if b.isascii():
        return b.decode("ascii")
    s = _decode_strict(b)
    if s is not None:
        return s
    out = []
    i = 0
    n = len(b)
    while i < n:
        cp, i = _mod_utf8_codepoint(b, i)
        out.append("\ufffd" if cp < 0 else chr(cp))
    return "".join(out)


# ---------------------------------------------------------------------------
# Literal conversion (json-parser.c parse_literal / parse_keyword / parse_string)
# ---------------------------------------------------------------------------

_I64_MIN = -(1 << 63)
_U64_MAX = (1 << 64) - 1


def _qint(s: str) -> int | float:
    """JSON_INTEGER: int64, else uint64 (non-negative only), else strtod."""
    if len(s) <= 18:
        return int(s)
    if len(s) <= 21:
        v = int(s)
        if _I64_MIN <= v <= _U64_MAX:
            return v
    return float(s)


def _parse_keyword(tok: bytes) -> tuple[object, str | None]:
    if tok == b"true":
        return True, None
    if tok == b"false":
        return False, None
    if tok == b"null":
        return None, None
    msg = (b"invalid keyword '" + tok + b"'")[:_PARSE_MESSAGE_MAX]
    return None, _writer_text(_PARSE_ERROR_PREFIX + msg)


_SIMPLE_ESCAPES = {
    ord('"'): '"',
    ord("'"): "'",
    ord("\\"): "\\",
    ord("/"): "/",
    ord("b"): "\b",
    ord("f"): "\f",
    ord("n"): "\n",
    ord("r"): "\r",
    ord("t"): "\t",
}
_HEX = frozenset(b"0123456789abcdefABCDEF")


def _cvt4hex(tok: bytes, i: int) -> int:
    h = tok[i : i + 4]
    if len(h) != 4 or not all(c in _HEX for c in h):
        return -1
    return int(h, 16)


def _parse_string(tok: bytes) -> tuple[str | None, str | None]:
    """Port of parse_string(); tok includes both quotes. (value, error)."""
    end = len(tok) - 1  # index of the closing quote
    if tok.find(b"\\", 1, end) < 0:
        s = _decode_strict(tok[1:end])
        if s is None:
            return None, ERR_INVALID_UTF8
        return s, None
    parts: list[str] = []
    i = 1
    while True:
        j = tok.find(b"\\", i, end)
        seg_end = end if j < 0 else j
        if seg_end > i:
            s = _decode_strict(tok[i:seg_end])
            if s is None:
                return None, ERR_INVALID_UTF8
            parts.append(s)
        if j < 0:
            return "".join(parts), None
        esc = tok[j + 1]
        simple = _SIMPLE_ESCAPES.get(esc)
        if simple is not None:
            parts.append(simple)
            i = j + 2
            continue
        if esc != 0x75:  # 'u'
            return None, ERR_INVALID_ESCAPE
        ptr = j + 6
        cp = _cvt4hex(tok, j + 2)
        if 0xD800 <= cp <= 0xDBFF and tok[ptr : ptr + 2] == b"\\u":
            cp = 0x10000 + ((cp & 0x3FF) << 10)
            trailing = _cvt4hex(tok, ptr + 2)
            if 0xDC00 <= trailing <= 0xDFFF:
                cp |= trailing & 0x3FF
                ptr += 6
            else:
                cp = -1
        if not _valid_codepoint(cp):
            text = tok[j:ptr]  # "%.*s"; the C string ends after the quote
            return None, _writer_text(
                _PARSE_ERROR_PREFIX + text + b" is not a valid Unicode character"
            )
        parts.append(chr(cp))
        i = ptr


# ---------------------------------------------------------------------------
# Push parser equivalent to json-parser.c's recursive descent
# ---------------------------------------------------------------------------

# frame states
_OBJ_START = 0  # after '{': '}' or first key
_OBJ_KEY = 1  # a key value is being parsed
_OBJ_COLON = 2
_OBJ_VALUE = 3  # a member value is being parsed
_OBJ_SEP = 4  # ',' or '}'
_ARR_START = 5  # after '[': ']' or first element
_ARR_VALUE = 6  # an element is being parsed
_ARR_SEP = 7  # ',' or ']'

_VALUE_STATES = (_OBJ_KEY, _OBJ_VALUE, _ARR_VALUE)


class _PushParser:
    """Consumes the tokens of one message in order and fails at the same
    token, with the same message, as QEMU's recursive-descent parser."""

    __slots__ = ("stack", "error", "done", "result")

    def __init__(self) -> None:
        self.stack: list[list[Any]] = []  # [state, container, key]
        self.error: str | None = None
        self.done = False
        self.result: object = None

    def fail(self, msg: str) -> None:
        self.error = msg
        self.stack = []

    def token(self, tt: int, text: bytes) -> None:
        if self.error is not None:
            return
        if self.done:  # cannot happen: the streamer stops at the value's end
            return
        stack = self.stack
        if stack:
            frame = stack[-1]
            st = frame[0]
            if st == _OBJ_START:
                if tt == JSON_RCURLY:
                    stack.pop()
                    self.complete(frame[1])
                    return
                frame[0] = _OBJ_KEY
            elif st == _ARR_START:
                if tt == JSON_RSQUARE:
                    stack.pop()
                    self.complete(frame[1])
                    return
                frame[0] = _ARR_VALUE
            elif st == _OBJ_COLON:
                if tt != JSON_COLON:
                    self.fail(ERR_MISSING_COLON)
                else:
                    frame[0] = _OBJ_VALUE
                return
            elif st == _OBJ_SEP:
                if tt == JSON_RCURLY:
                    stack.pop()
                    self.complete(frame[1])
                elif tt == JSON_COMMA:
                    frame[0] = _OBJ_KEY
                else:
                    self.fail(ERR_DICT_SEPARATOR)
                return
            elif st == _ARR_SEP:
                if tt == JSON_RSQUARE:
                    stack.pop()
                    self.complete(frame[1])
                elif tt == JSON_COMMA:
                    frame[0] = _ARR_VALUE
                else:
                    self.fail(ERR_LIST_SEPARATOR)
                return
        # parse_value()
        if tt == JSON_LCURLY:
            stack.append([_OBJ_START, {}, None])
        elif tt == JSON_LSQUARE:
            stack.append([_ARR_START, [], None])
        elif tt == JSON_STRING:
            v, err = _parse_string(text)
            if err is not None:
                self.fail(err)
            else:
                self.complete(v)
        elif tt == JSON_INTEGER:
            self.complete(_qint(text.decode("ascii")))
        elif tt == JSON_FLOAT:
            self.complete(float(text))
        elif tt == JSON_KEYWORD:
            kw, err = _parse_keyword(text)
            if err is not None:
                self.fail(err)
            else:
                self.complete(kw)
        else:
            self.fail(ERR_EXPECTING_VALUE)

    def complete(self, value: object) -> None:
        stack = self.stack
        if not stack:
            self.done = True
            self.result = value
            return
        frame = stack[-1]
        st = frame[0]
        if st == _OBJ_KEY:
            if not isinstance(value, str):
                self.fail(ERR_KEY_NOT_STRING)
                return
            frame[2] = value
            frame[0] = _OBJ_COLON
        elif st == _OBJ_VALUE:
            d = frame[1]
            key = frame[2]
            if key in d:
                self.fail(ERR_DUPLICATE_KEY)
                return
            d[key] = value
            frame[0] = _OBJ_SEP
        else:  # _ARR_VALUE
            frame[1].append(value)
            frame[0] = _ARR_SEP

    def finish(self) -> Parsed | ParseError:
        if self.error is not None:
            return ParseError(self.error)
        if not self.done:
            return ParseError(ERR_PREMATURE_EOI)
        return Parsed(self.result)


# ---------------------------------------------------------------------------
# Fast path: the stdlib C scanner for plain ASCII objects/arrays
# ---------------------------------------------------------------------------


class _Reject(Exception):
    pass


def _pairs_hook(pairs: list[tuple[str, object]]) -> dict[str, object]:
    d = dict(pairs)
    if len(d) != len(pairs):
        raise _Reject
    return d


def _reject_constant(name: str) -> object:
    raise _Reject


_FAST_DECODER = json.JSONDecoder(
    object_pairs_hook=_pairs_hook,
    parse_int=_qint,
    parse_float=float,
    parse_constant=_reject_constant,
    strict=True,
)
_fast_scan = _FAST_DECODER.scan_once  # type: ignore[attr-defined]  # set by JSONDecoder.__init__; typeshed lacks it

# ---------------------------------------------------------------------------
# The stream parser
# ---------------------------------------------------------------------------


class JSONStreamParser:
    """Incremental QMP input parser with QEMU 7.2's exact behaviour.

    ``feed(data)`` returns the items completed by ``data`` in order: a
    :class:`Parsed` for every complete top-level JSON value and a
    :class:`ParseError` for every error QEMU would report.  Never raises on
    any input; memory stays bounded by the limits (the incomplete message is
    at most ``max_token_size`` bytes of tokens plus one partial token).
    """

    def __init__(
        self,
        max_nesting: int = MAX_NESTING,
        max_token_size: int = MAX_TOKEN_SIZE,
        max_token_count: int = MAX_TOKEN_COUNT,
    ) -> None:
        self.max_nesting = max_nesting
        self.max_token_size = max_token_size
        self.max_token_count = max_token_count
        # lexer
        self._buf = bytearray()
        self._state = IN_START
        self._tok_start = 0  # current token is self._buf[_tok_start:_pos]
        self._pos = 0
        # streamer
        self._brace = 0
        self._bracket = 0
        self._ntokens = 0
        self._tsize = 0
        self._parser: _PushParser | None = None

    # -- public API ---------------------------------------------------------

    def feed(self, data: bytes, max_items: int | None = None) -> list[Parsed | ParseError]:
        """Consume ``data``; return every item it completes, in stream order.

        With ``max_items``, stop at the first message boundary after that many items:
        the rest stays buffered, unlexed (:meth:`unparsed`), until the next call
        (``feed(b"", max_items)`` goes on with it).  This is how the server keeps
        what it parsed ahead of execution bounded, as QEMU's request queue is."""
        out: list[Parsed | ParseError] = []
        buf = self._buf
        if data:
            buf += data
        elif self._pos >= len(buf):
            return out
        end = len(buf)
        pos = self._pos
        text: str | None = None
        ws = _RUNS[IN_START]
        while pos < end:
            if max_items is not None and len(out) >= max_items and self._ntokens == 0 and (
                    self._state == IN_START or self._state == IN_RECOVERY):
                self._tok_start = pos       # a message boundary (or error recovery, which holds nothing)
                break
            if self._state == IN_START and self._ntokens == 0:
                # idle between messages: try the fast path on '{' / '['
                pos = ws.match(buf, pos).end()  # type: ignore[union-attr]  # whitespace run: matches, maybe empty
                if pos >= end:
                    break
                if buf[pos] == 0x7B or buf[pos] == 0x5B:
                    if text is None:
                        text = buf.decode("latin-1")
                    fast = self._fast(buf, text, pos)
                    if fast is not None:
                        out.append(Parsed(fast[0]))
                        pos = fast[1]
                        continue
                self._tok_start = pos
            pos = self._lex(buf, pos, end, out)
        if self._state == IN_START or self._state == IN_RECOVERY:
            self._tok_start = pos
        cut = self._tok_start  # keep only the partial token
        if cut:
            del buf[:cut]
        self._tok_start = 0
        self._pos = pos - cut
        return out

    def pending(self) -> int:
        """Bytes held for the incomplete message (queued tokens + partial token) and not lexed yet."""
        return self._tsize + (len(self._buf) - self._tok_start)

    def unparsed(self) -> int:
        """Bytes a ``max_items`` stop left unlexed (0: everything fed was consumed)."""
        return len(self._buf) - self._pos

    # -- fast path ---------------------------------------------------------

    def _fast(self, buf: bytearray, text: str, pos: int) -> tuple[object, int] | None:
        """Decode the object/array at ``pos`` with the stdlib C scanner when the
        result is guaranteed to equal QEMU's: plain ASCII, no ``\\u`` escapes
        (so no surrogate/noncharacter questions), no duplicate keys, no
        NaN/Infinity, within all limits.  None: use the exact slow path."""
        try:
            value, vend = _fast_scan(text, pos)
        except Exception:  # anything unusual: let the exact slow path decide
            return None
        chunk = buf[pos:vend]
        if not chunk.isascii() or b"\\u" in chunk:
            return None
        n = vend - pos
        if n + 1 > self.max_token_size or n > self.max_token_count:
            return None
        # a value of n bytes nests at most n/2 deep
        if n > 2 * self.max_nesting and chunk.count(b"[") + chunk.count(b"{") > self.max_nesting:
            return None
        return value, vend

    # -- lexer (json-lexer.c) -------------------------------------------------

    def _lex(self, buf: bytearray, pos: int, end: int, out: list[Parsed | ParseError]) -> int:
        """Run the lexer over buf[pos:end].  Returns at ``end``, or early when
        a token leaves the streamer idle (so feed() can use the fast path)."""
        table = _TABLE
        runs = _RUNS
        state = self._state
        tok_start = self._tok_start
        maxsize = self.max_token_size
        while pos < end:
            rx = runs[state]
            if rx is not None:
                if state == IN_START or state == IN_RECOVERY:
                    pos = rx.match(buf, pos, end).end()  # type: ignore[union-attr]  # every run pattern matches ''
                    tok_start = pos
                else:
                    limit = tok_start + maxsize + 1
                    pos = rx.match(buf, pos, limit if limit < end else end).end()  # type: ignore[union-attr]  # ditto
                    if pos - tok_start > maxsize:
                        # json_lexer_feed_char(): token longer than MAX_TOKEN_SIZE
                        state = IN_START
                        tok_start = pos
                        self._token(_JSON_OVERSIZE, b"", out)
                        if self._ntokens == 0:
                            break
                        continue
                if pos >= end:
                    break
            nxt = table[state][buf[pos]]
            if nxt & _LOOKAHEAD:
                nxt &= ~_LOOKAHEAD
                state = IN_START
                if nxt >= _JSON_MIN:
                    self._token(nxt, bytes(buf[tok_start:pos]), out)
                    tok_start = pos
                    if self._ntokens == 0:
                        break
                tok_start = pos
                continue
            pos += 1
            if nxt >= _JSON_MIN:
                state = IN_START
                self._token(nxt, bytes(buf[tok_start:pos]), out)
                tok_start = pos
                if self._ntokens == 0:
                    break
            elif nxt == JSON_ERROR:
                state = IN_RECOVERY
                self._token(JSON_ERROR, bytes(buf[tok_start:pos]), out)
                tok_start = pos
                break       # back to feed(), which may stop here (max_items)
            elif nxt == IN_START or nxt == IN_RECOVERY:
                state = nxt
                tok_start = pos
            else:
                state = nxt
                if pos - tok_start > maxsize:
                    state = IN_START
                    tok_start = pos
                    self._token(_JSON_OVERSIZE, b"", out)
                    if self._ntokens == 0:
                        break
        self._state = state
        self._tok_start = tok_start
        return pos

    # -- streamer (json-streamer.c) ------------------------------------------

    def _reset_stream(self) -> None:
        self._brace = 0
        self._bracket = 0
        self._ntokens = 0
        self._tsize = 0
        self._parser = None

    def _token(self, tt: int, text: bytes, out: list[Parsed | ParseError]) -> None:
        if tt == JSON_LCURLY:
            self._brace += 1
        elif tt == JSON_RCURLY:
            self._brace -= 1
        elif tt == JSON_LSQUARE:
            self._bracket += 1
        elif tt == JSON_RSQUARE:
            self._bracket -= 1
        elif tt == JSON_ERROR:
            # "JSON parse error, stray '%s'": %s stops at a NUL byte
            text = text.partition(b"\x00")[0]
            out.append(ParseError(_writer_text(b"JSON parse error, stray '" + text + b"'")))
            self._reset_stream()
            return
        if tt == _JSON_OVERSIZE or self._tsize + len(text) + 1 > self.max_token_size:
            out.append(ParseError(ERR_TOKEN_SIZE))
            self._reset_stream()
            return
        if self._ntokens + 1 > self.max_token_count:
            out.append(ParseError(ERR_TOKEN_COUNT))
            self._reset_stream()
            return
        if self._brace + self._bracket > self.max_nesting:
            out.append(ParseError(ERR_NESTING))
            self._reset_stream()
            return
        self._ntokens += 1
        self._tsize += len(text)
        parser = self._parser
        if parser is None:
            parser = self._parser = _PushParser()
        parser.token(tt, text)
        if (self._brace > 0 or self._bracket > 0) and self._brace >= 0 and self._bracket >= 0:
            return
        out.append(parser.finish())
        self._reset_stream()


# ---------------------------------------------------------------------------
# Writer (qobject/json-writer.c, compact mode) + monitor line ending
# ---------------------------------------------------------------------------

_STR_SPECIAL = re.compile('[\x00-\x1f"\\\\\x7f-\U0010ffff]')
_STR_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
}


def _escape_char(m: re.Match[str]) -> str:
    c = m.group()
    e = _STR_ESCAPES.get(c)
    if e is not None:
        return e
    cp = ord(c)
    if not _valid_codepoint(cp):
        cp = 0xFFFD  # QEMU cannot hold these; its writer prints U+FFFD
    if cp > 0xFFFF:
        cp -= 0x10000
        return "\\u%04X\\u%04X" % (0xD800 + (cp >> 10), 0xDC00 + (cp & 0x3FF))
    return "\\u%04X" % cp


def _quote(s: str) -> str:
    return '"' + _STR_SPECIAL.sub(_escape_char, s) + '"'


def _format_double(f: float, style: str = "%.17g") -> str:
    if f != f:
        return "-nan" if math.copysign(1.0, f) < 0 else "nan"
    if style == "%f":       # QEMU <= 5.2: printf("%f"), then trailing zeros (and a bare ".") cut
        text = ("%f" % f).rstrip("0")
        return text[:-1] if text.endswith(".") else text
    return "%.17g" % f


_END = object()


def _encode_into(obj: object, parts: list[str], double: str = "%.17g") -> None:
    """Iterative (QMP values may nest 1024+ deep) port of the compact writer."""
    append = parts.append
    stack: list[list[Any]] = []  # [iterator, is_dict, need_comma]
    value = obj
    while True:
        if isinstance(value, str):
            append(_quote(value))
        elif value is None:
            append("null")
        elif value is True:
            append("true")
        elif value is False:
            append("false")
        elif isinstance(value, int):
            if _I64_MIN <= value <= _U64_MAX:
                append(int.__repr__(value))
            else:  # QEMU would hold such a number as a double
                try:
                    append(_format_double(float(value), double))
                except OverflowError:
                    append("inf" if value > 0 else "-inf")
        elif isinstance(value, float):
            append(_format_double(value, double))
        elif isinstance(value, dict):
            if value:
                append("{")
                stack.append([iter(value.items()), True, False])
            else:
                append("{}")
        elif isinstance(value, (list, tuple)):
            if value:
                append("[")
                stack.append([iter(value), False, False])
            else:
                append("[]")
        else:
            raise TypeError(f"cannot encode {type(value).__name__} as QMP JSON")
        # find the next value to write
        while stack:
            top = stack[-1]
            item: Any = next(top[0], _END)
            if item is _END:
                append("}" if top[1] else "]")
                stack.pop()
                continue
            if top[2]:
                append(", ")
            else:
                top[2] = True
            if top[1]:
                key, value = item
                if not isinstance(key, str):
                    raise TypeError(f"QMP object keys must be str, not {type(key).__name__}")
                append(_quote(key))
                append(": ")
            else:
                value = item
            break
        else:
            return


def encode(obj: object, double: str = "%.17g") -> bytes:
    """Serialise one message as QEMU 7.2 sends it: compact JSON (``": "`` and
    ``", "`` separators, dict order preserved), every non-ASCII/control
    character as ``\\uXXXX`` (uppercase hex, surrogate pairs beyond the BMP,
    0x7F included, ``/`` not escaped), doubles as ``%.17g`` (so ``inf``/``nan``
    come out as invalid JSON, like QEMU), terminated by ``\\r\\n``.  ``double="%f"`` writes
    doubles as QEMU 5.2 did (``Release.json_double``)."""
    parts: list[str] = []
    _encode_into(obj, parts, double)
    parts.append("\r\n")
    return "".join(parts).encode("ascii")
