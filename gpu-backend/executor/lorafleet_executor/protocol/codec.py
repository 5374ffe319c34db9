"""Messages to frames and back, checked against the table in schema.py; mirrors
gpu-backend/src/protocol/protocol.ts.

Both sides write the same bytes for the same message (meta keys in schema order, compact
JSON, numbers as JavaScript prints them), so one set of byte fixtures checks both.

    frame = encode_message(7, "stats", None)
    decode_message(frame)  # Message(request_id=7, name="stats", body=None)
"""

import json
import math
import struct
from decimal import Decimal
from typing import Any

import numpy as np

from ..errors import BadFrame, BadMessage
from .frame import HEADER, MAGIC, MAX_PAYLOAD_BYTES, VERSION, pad8, read_header
from .messages import Message
from .schema import (
    BODY_CLASS,
    DTYPES,
    MAX_COUNT,
    MAX_U32,
    MESSAGES,
    MODULE_NAMES,
    NAME_BY_TYPE,
    Field,
    Spec,
)


def encode_message(request_id: int, name: str, body: Any) -> bytes:
    spec = MESSAGES.get(name)
    if spec is None:
        raise BadMessage(f"unknown message {name!r}")
    if not _is_int(request_id) or not 0 <= request_id <= MAX_U32:
        raise BadMessage(f"request id {request_id!r} is not a u32")
    expected = BODY_CLASS[name]
    if expected is None:
        if body is not None:
            raise BadMessage(f"{name}: carries no body")
    elif not isinstance(body, expected):
        raise BadMessage(f"{name}: body must be a {expected.__name__}")

    if isinstance(body, dict):
        unknown = set(body) - {f.wire for f in spec.fields} - {a.wire for a in spec.arrays}
        if unknown:
            raise BadMessage(f"{name}: fields {sorted(unknown)} are not in PROTOCOL.md")

    def get(key: str) -> Any:
        if isinstance(body, dict):
            if key not in body:
                raise BadMessage(f'{name}: meta field "{key}" is missing')
            return body[key]
        return getattr(body, key)

    arrays: list[tuple[str, str, np.ndarray]] = []
    for want in spec.arrays:
        data = get(want.wire)
        if not isinstance(data, np.ndarray) or data.ndim != 1:
            raise BadMessage(f"{name}: {want.wire} must be a 1-d numpy array")
        if data.dtype.newbyteorder("<") != DTYPES[want.dtype].newbyteorder("<"):
            raise BadMessage(f"{name}: {want.wire} must be {want.dtype}, got {data.dtype}")
        arrays.append((want.wire, want.dtype, data.astype(DTYPES[want.dtype], copy=False)))
    meta: dict[str, Any] = {}
    lengths = {wire: len(data) for wire, _, data in arrays}
    for field in spec.fields:
        value = get(field.wire) if field.length_of is None else lengths[field.length_of]
        meta[field.wire] = _checked(name, field, value)
    _check_arrays(name, spec, meta, arrays)
    meta["arrays"] = [[wire, dtype, len(data)] for wire, dtype, data in arrays]
    meta_bytes = _json(meta).encode("utf-8")
    parts = [
        struct.pack("<I", len(meta_bytes)),
        meta_bytes,
        bytes(pad8(4 + len(meta_bytes)) - 4 - len(meta_bytes)),
    ]
    for _, _, data in arrays:
        raw = np.ascontiguousarray(data).tobytes()
        parts += [raw, bytes(pad8(len(raw)) - len(raw))]
    payload = b"".join(parts)
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise BadMessage(f"payload length {len(payload)} over the limit of {MAX_PAYLOAD_BYTES}")
    return HEADER.pack(MAGIC, VERSION, spec.type, request_id, len(payload)) + payload


def decode_message(data: bytes) -> Message:
    """One complete frame -> its Message; BadFrame or BadMessage names what is wrong."""
    header = read_header(data)
    total = HEADER.size + header.payload_length
    if len(data) < total:
        raise BadFrame(f"truncated frame: {len(data)} of {total} bytes")
    if len(data) > total:
        raise BadFrame(f"{len(data) - total} bytes after the frame's end")
    payload = memoryview(data)[HEADER.size :]
    if len(payload) < 4:
        raise BadMessage("payload shorter than its meta_len field")
    (meta_len,) = struct.unpack_from("<I", payload)
    if 4 + meta_len > len(payload):
        raise BadMessage(f"meta_len {meta_len} runs past the payload's {len(payload)} bytes")
    meta = _parse_meta(bytes(payload[4 : 4 + meta_len]))
    listed = meta.pop("arrays", None)
    arrays = []
    offset = pad8(4 + meta_len)
    for wire, dtype, length in _array_list(listed):
        nbytes = length * DTYPES[dtype].itemsize
        if offset + nbytes > len(payload):
            raise BadMessage(f"array {wire} ({length} × {dtype}) runs past the payload's end")
        array = np.frombuffer(payload, DTYPES[dtype], length, offset).copy()
        arrays.append((wire, dtype, array))
        offset += pad8(nbytes)
    if offset != len(payload):
        raise BadMessage(f"payload is {len(payload)} bytes but its meta and arrays take {offset}")
    name = NAME_BY_TYPE.get(header.type)
    if name is None:
        raise BadMessage(f"unknown message type {header.type}")
    spec = MESSAGES[name]
    for key in meta:
        if all(field.wire != key for field in spec.fields):
            raise BadMessage(f'{name}: unknown meta field "{key}"')
    values = {}
    for field in spec.fields:
        if field.wire not in meta:
            raise BadMessage(f'{name}: meta field "{field.wire}" is missing')
        values[field.wire] = _checked(name, field, meta[field.wire])
    _check_arrays(name, spec, values, arrays)
    fields = {f.wire: values[f.wire] for f in spec.fields if f.length_of is None}
    fields.update({wire: array for wire, _, array in arrays})
    body_class = BODY_CLASS[name]
    body = None if body_class is None else body_class(**fields)
    return Message(header.request_id, name, body)


def _parse_meta(raw: bytes) -> dict:
    def refuse_constant(token: str) -> None:
        raise ValueError(f"{token} is not JSON")

    try:
        meta = json.loads(raw.decode("utf-8"), parse_constant=refuse_constant)
    except (UnicodeDecodeError, ValueError) as error:
        raise BadMessage(f"meta is not UTF-8 JSON: {error}") from None
    if not isinstance(meta, dict):
        raise BadMessage("meta is not a JSON object")
    return meta


def _array_list(listed: Any) -> list[tuple[str, str, int]]:
    if not isinstance(listed, list):
        raise BadMessage('meta field "arrays" is missing or not a list')
    entries = []
    for i, entry in enumerate(listed):
        ok = (
            isinstance(entry, list)
            and len(entry) == 3
            and isinstance(entry[0], str)
            and entry[1] in DTYPES
            and _as_count(entry[2]) is not None
        )
        if not ok:
            raise BadMessage(f"arrays[{i}] is not [name, dtype (u8|i32|u32|f32|i64), length]")
        entries.append((entry[0], entry[1], _as_count(entry[2])))
    return entries


def _check_arrays(name: str, spec: Spec, meta: dict, arrays: list) -> None:
    got_names = [wire for wire, _, _ in arrays]
    want_names = [a.wire for a in spec.arrays]
    if got_names != want_names:
        want = ", ".join(want_names) or "none"
        got = ", ".join(got_names) or "none"
        raise BadMessage(f"{name}: arrays must be [{want}] in this order, got [{got}]")
    for want, (_, dtype, data) in zip(spec.arrays, arrays, strict=True):
        if dtype != want.dtype:
            raise BadMessage(f"{name}: array {want.wire} must be {want.dtype}, got {dtype}")
        if want.length != "any":
            field, times = want.length
            expected = meta[field] * times
            if len(data) != expected:
                raise BadMessage(
                    f"{name}: array {want.wire} has {len(data)} elements, {field} says {expected}"
                )
    by_name = {wire: data for wire, _, data in arrays}
    if name == "step":
        total = int(by_name["num_new_tokens"].sum(dtype=np.int64))
        if total != meta["num_tokens"]:
            raise BadMessage(
                f"step: num_new_tokens sum to {total}, num_tokens is {meta['num_tokens']}"
            )
    if name == "step_result":
        counts = by_name["top_counts"]
        if (counts < 0).any():
            raise BadMessage("step_result: a top_counts entry is negative")
        total = int(counts.sum(dtype=np.int64))
        for wire in ("top_ids", "top_logprobs"):
            if len(by_name[wire]) != total:
                raise BadMessage(
                    f"step_result: {wire} has {len(by_name[wire])} elements, "
                    f"top_counts sum to {total}"
                )


def _is_int(value: Any) -> bool:
    # numpy integers count: the executor's numbers often come out of numpy or torch.
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def _is_number(value: Any) -> bool:
    return _is_int(value) or isinstance(value, float | np.floating)


def _as_count(value: Any, limit: int = MAX_COUNT) -> int | None:
    """An integer 0 … limit, as JSON may spell it (1, 1.0, 1e2), else None."""
    if isinstance(value, float | np.floating) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if _is_int(value) and 0 <= value <= limit:
        return int(value)
    return None


def _checked(name: str, field: Field, value: Any) -> Any:
    """`value` in its canonical Python form, or BadMessage naming why it is not a `kind`."""
    kind = field.kind
    problem = None
    if isinstance(kind, tuple):
        if value not in kind or not isinstance(value, str):
            problem = "must be one of " + " | ".join(kind)
    elif kind in ("count", "u32"):
        count = _as_count(value, MAX_COUNT if kind == "count" else MAX_U32)
        if count is None:
            problem = "must be an integer 0 … " + ("2^53-1" if kind == "count" else "2^32-1")
        value = count
    elif kind == "number":
        ok = _is_number(value) and math.isfinite(value)
        problem = None if ok else "must be a finite number"
        value = float(value) if ok else value
    elif kind == "string":
        problem = None if isinstance(value, str) else "must be a string"
    elif kind == "bool":
        problem = None if isinstance(value, bool) else "must be true or false"
    elif kind == "u32_list":
        items = [_as_count(v, MAX_U32) for v in value] if isinstance(value, list) else [None]
        problem = "must be a list of u32" if None in items else None
        value = items
    elif kind == "string_list":
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        problem = None if ok else "must be a list of strings"
        value = list(value) if ok else value
    elif kind == "modules":
        value, problem = _modules(value)
    if problem is not None:
        raise BadMessage(f'{name}: meta field "{field.wire}" {problem}')
    return value


def _modules(value: Any) -> tuple[Any, str | None]:
    if not isinstance(value, dict):
        return value, "must be an object of module name -> [in, out]"
    if sorted(value) != sorted(MODULE_NAMES):
        return value, "must have exactly the modules " + " ".join(MODULE_NAMES)
    pairs = {}
    for module in MODULE_NAMES:
        pair = value[module]
        counts = [_as_count(v) for v in pair] if isinstance(pair, list | tuple) else []
        if len(counts) != 2 or None in counts:
            return value, "must map each module to [in, out] counts"
        pairs[module] = counts
    return pairs, None


def _json(value: Any) -> str:
    """Compact JSON exactly as JavaScript's JSON.stringify writes it."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{_json(str(k))}:{_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_json(v) for v in value) + "]"
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise BadMessage(f"string {value!r} is not valid Unicode") from None
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _js_number(value)
    raise BadMessage(f"{type(value).__name__} has no JSON form")


def _js_number(x: float) -> str:
    """ECMAScript's Number::toString: shortest round-trip digits, exponent only outside
    1e-7 … 1e21, so 2.0 -> "2" and 1e-7 -> "1e-7" as on the TypeScript side."""
    if not math.isfinite(x):
        raise BadMessage(f"{x} is not a finite number")
    if x == 0:
        return "0"
    if x < 0:
        return "-" + _js_number(-x)
    _, digit_tuple, exponent = Decimal(repr(x)).as_tuple()
    n = len(digit_tuple) + exponent  # x = 0.d1d2… × 10^n
    digits = "".join(map(str, digit_tuple)).rstrip("0")
    k = len(digits)
    if k <= n <= 21:
        return digits + "0" * (n - k)
    if 0 < n <= 21:
        return digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return "0." + "0" * -n + digits
    e = n - 1
    mantissa = digits if k == 1 else digits[0] + "." + digits[1:]
    return f"{mantissa}e{'+' if e >= 0 else '-'}{abs(e)}"
