"""The one set of rules a LoRA adapter must meet to be served: the executor's copy of
api/src/adapter/ (TypeScript, where the rules and their order are written out; the
gateway's upload and the backend's registration check them there). Held to
api/fixtures/adapter-cases.json, the same verdict to the word
(tests/test_adapter_rules.py), so an adapter refused here was refused at upload and at
registration already, with the same message.

JSON is read as JavaScript's JSON.parse reads it (every number a double; NaN and
Infinity are not JSON), strings are compared and sorted by code point, and text from the
files goes into messages through `printable`: the two languages cannot differ there.

Example:
    config = check_config(config_bytes, max_rank=64)
    entries = parse_safetensors_header(head, file_size)
    tensors = check_lora_tensors(entries, config, num_layers, cfg.module_shapes())
    check_values(tensors, data_section, config.scale)
"""

import json
import math
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ..errors import AdapterInvalid
from .adapter_layout import MODULES

MAX_CONFIG_BYTES = 64 * 1024
MAX_HEADER_BYTES = 8 * 1024 * 1024
MAX_JSON_DEPTH = 64
MAX_SCALE = 1024.0
MAX_WEIGHT = 65504.0  # fp16's largest: A and B x scale fit the narrowest pool dtype
WEIGHT_DTYPES = ("F32", "F16", "BF16")
REFUSED_FEATURES = (
    "use_dora",
    "lora_bias",
    "modules_to_save",
    "rank_pattern",
    "alpha_pattern",
    "layers_to_transform",
    "layer_replication",
    "exclude_modules",
    "trainable_token_indices",
    "target_parameters",
    "use_qalora",
    "alora_invocation_tokens",
    "fan_in_fan_out",
)
DTYPE_BYTES = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U64": 8,
    "U32": 4,
    "U16": 2,
    "U8": 1,
    "BOOL": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
}
CONFIG = "adapter_config.json"
WEIGHTS = "adapter_model.safetensors"
_PROJECTIONS = ", ".join(f"{m}_proj" for m in MODULES)
_PARENT = {m: "self_attn" for m in ("q", "k", "v", "o")}
_PARENT |= {m: "mlp" for m in ("gate", "up", "down")}
_LORA_NAME = re.compile(
    r"(?:base_model\.model\.)?model\.layers\.([0-9]+)\.(self_attn|mlp)\."
    r"(q|k|v|o|gate|up|down)_proj\.lora_(A|B)\.weight"
)
_PRINTABLE = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
_MAX_SAFE = 2**53 - 1


@dataclass
class AdapterConfig:
    rank: int
    alpha: float
    use_rslora: bool
    scale: float  # alpha / r, or alpha / sqrt(r) with rsLoRA
    targets: list[str]  # canonical order
    raw: dict


@dataclass(frozen=True)
class TensorEntry:
    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int  # byte range in the data section
    end: int


@dataclass(frozen=True)
class LoraTensor:
    layer: int
    module: str
    side: str  # "A" | "B"
    entry: TensorEntry


def printable(text: str) -> str:
    """Letters, digits and `_ . -` kept, others `?`, at most 80 characters."""
    kept = "".join(c if c in _PRINTABLE else "?" for c in text[:80])
    return kept + ("..." if len(text) > 80 else "")


def nested_too_deep(text: str) -> bool:
    depth, in_string, escaped = 0, False, False
    for c in text:
        if in_string:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c in "{[":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return True
        elif c in "}]":
            depth -= 1
    return False


def utf8(data: bytes) -> str | None:
    """UTF-8 text with a leading BOM dropped, or None."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text[1:] if text.startswith("\ufeff") else text


def _not_json(constant: str) -> None:
    raise ValueError(f"{constant} is not JSON")


def parse_json(text: str) -> object:
    """As JSON.parse: every number a double (no digit limit), NaN and Infinity refused;
    raises ValueError."""
    return json.loads(text, parse_int=float, parse_constant=_not_json)


def _is_set(value: object) -> bool:
    if value is None or value is False or value == "":
        return False
    if isinstance(value, float):
        return value != 0
    if isinstance(value, list | dict):
        return len(value) > 0
    return True


def _whole(value: object) -> bool:
    return isinstance(value, float) and value.is_integer()


def check_config(data: bytes, max_rank: int) -> AdapterConfig:
    """adapter_config.json's bytes; raises AdapterInvalid with the first rule broken."""

    def bad(rule: str, why: str) -> AdapterInvalid:
        return AdapterInvalid(f"{CONFIG}: {why}", rule)

    if len(data) > MAX_CONFIG_BYTES:
        raise AdapterInvalid(f"{CONFIG} is over {MAX_CONFIG_BYTES} bytes", "adapter_too_large")
    text = utf8(data)
    if text is None:
        raise bad("adapter_config_invalid_json", "not UTF-8")
    if nested_too_deep(text):
        raise bad("adapter_config_invalid_json", f"nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        raw = parse_json(text)
    except ValueError:
        raise bad("adapter_config_invalid_json", "not valid JSON") from None
    if not isinstance(raw, dict):
        raise bad("adapter_config_invalid", "not a JSON object")
    if raw.get("peft_type") != "LORA":
        raise bad("adapter_config_invalid", 'peft_type must be "LORA"')
    for feature in REFUSED_FEATURES:
        if _is_set(raw.get(feature)):
            raise bad("unsupported_adapter_feature", f"{feature} is set; it is not supported")
    if "bias" in raw and raw["bias"] != "none":
        raise bad(
            "unsupported_adapter_feature", 'bias must be "none" (bias training is not supported)'
        )
    rank = raw.get("r")
    if not _whole(rank) or rank < 1:
        raise bad("adapter_config_invalid", "r must be a whole number of at least 1")
    if rank > max_rank:
        raise bad("rank_too_large", f"r must be at most {max_rank}")
    alpha = raw.get("lora_alpha")
    if not isinstance(alpha, float) or not math.isfinite(alpha) or alpha <= 0:
        raise bad("adapter_config_invalid", "lora_alpha must be a number above 0")
    use_rslora = raw.get("use_rslora", False)
    if not isinstance(use_rslora, bool):
        raise bad("adapter_config_invalid", "use_rslora must be true or false")
    scale = alpha / math.sqrt(rank) if use_rslora else alpha / rank
    if not (0 < scale <= MAX_SCALE):
        raise bad(
            "scale_out_of_range",
            "the scale lora_alpha / r (lora_alpha / sqrt(r) with use_rslora) must be above 0 "
            f"and at most {MAX_SCALE:g}",
        )
    return AdapterConfig(int(rank), alpha, use_rslora, scale, _targets(raw, bad), raw)


def _targets(raw: dict, bad) -> list[str]:
    spec = raw.get("target_modules")
    if spec == "all-linear":
        return list(MODULES)
    if not isinstance(spec, list) or not spec or not all(isinstance(m, str) for m in spec):
        raise bad(
            "adapter_config_invalid",
            'target_modules must be "all-linear" or a non-empty list of module names '
            "(regular expressions are not supported)",
        )
    chosen = set()
    for name in spec:
        module = name[:-5] if name.endswith("_proj") else ""
        if module not in MODULES:
            raise bad(
                "unsupported_target_module",
                f"target module {printable(name)} is not one of {_PROJECTIONS}",
            )
        chosen.add(module)
    return [m for m in MODULES if m in chosen]


def safetensors_header_end(prefix: bytes, file_size: int) -> int:
    """8 + the declared header length, checked against the limit and the file's size."""
    if file_size < 8 or len(prefix) < 8:
        raise AdapterInvalid(
            f"{WEIGHTS} is shorter than its 8-byte header length", "safetensors_truncated"
        )
    (length,) = struct.unpack_from("<Q", prefix)
    if length > MAX_HEADER_BYTES:
        raise AdapterInvalid(
            f"{WEIGHTS} declares a {length}-byte header (at most {MAX_HEADER_BYTES})",
            "safetensors_header_too_large",
        )
    if 8 + length > file_size:
        raise AdapterInvalid(
            f"{WEIGHTS} declares a {length}-byte header but has {file_size - 8} bytes after "
            "the length",
            "safetensors_truncated",
        )
    return 8 + length


def parse_safetensors_header(head: bytes, file_size: int) -> list[TensorEntry]:
    """The tensors of a safetensors file of `file_size` bytes starting with `head`, by name."""
    data_start = safetensors_header_end(head, file_size)

    def bad(why: str) -> AdapterInvalid:
        return AdapterInvalid(f"{WEIGHTS}: the header {why}", "safetensors_bad_header")

    text = utf8(bytes(head[8:data_start]))
    if text is None:
        raise bad("is not UTF-8 JSON")
    if nested_too_deep(text):
        raise bad(f"is nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        header = parse_json(text)
    except ValueError:
        raise bad("is not UTF-8 JSON") from None
    if not isinstance(header, dict):
        raise bad("is not a JSON object")
    tensors = [_entry(name, header[name]) for name in sorted(header) if name != "__metadata__"]
    _check_tiling(tensors, file_size - data_start)
    return tensors


def _count(value: object) -> bool:
    return _whole(value) and 0 <= value <= _MAX_SAFE


def _entry(name: str, entry: object) -> TensorEntry:
    def bad(why: str) -> AdapterInvalid:
        return AdapterInvalid(
            f"{WEIGHTS}: tensor {printable(name)}: {why}", "safetensors_bad_tensor"
        )

    if not isinstance(entry, dict):
        raise bad("the entry is not an object")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in DTYPE_BYTES:
        raise bad("unknown dtype")
    if not isinstance(shape, list) or not all(_count(d) for d in shape):
        raise bad("shape is not a list of whole numbers")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(_count(o) for o in offsets)
        or offsets[0] > offsets[1]
    ):
        raise bad("data_offsets is not [begin, end] with begin <= end")
    size = 1.0
    for d in shape:
        size *= d
    if offsets[1] - offsets[0] != size * DTYPE_BYTES[dtype]:
        raise AdapterInvalid(
            f"{WEIGHTS}: tensor {printable(name)}: data_offsets do not span its dtype and shape",
            "safetensors_offsets_mismatch",
        )
    return TensorEntry(name, dtype, tuple(int(d) for d in shape), int(offsets[0]), int(offsets[1]))


def _check_tiling(tensors: list[TensorEntry], data_bytes: int) -> None:
    cursor = 0
    for t in sorted(tensors, key=lambda t: (t.begin, t.end, t.name)):
        if t.begin != cursor:
            raise AdapterInvalid(
                f"{WEIGHTS}: the tensors' data_offsets leave a gap or overlap",
                "safetensors_offsets_mismatch",
            )
        cursor = t.end
    if cursor != data_bytes:
        raise AdapterInvalid(
            f"{WEIGHTS}: the tensors cover {cursor} bytes but the data section has {data_bytes}",
            "safetensors_truncated" if cursor > data_bytes else "safetensors_offsets_mismatch",
        )


def _layer(digits: str, num_layers: int) -> int:
    trimmed = digits.lstrip("0") or "0"
    layer = int(trimmed) if len(trimmed) <= 6 else num_layers
    return layer if layer < num_layers else -1


def check_lora_tensors(
    tensors: list[TensorEntry],
    config: AdapterConfig,
    num_layers: int,
    module_shapes: Mapping[str, tuple[int, int]],
) -> list[LoraTensor]:
    """`tensors` (sorted by name) against the config and the base model; every weight in
    the canonical order: layer, projection, A before B."""
    found: dict[tuple[int, str, str], LoraTensor] = {}
    for entry in tensors:
        name = printable(entry.name)
        match = _LORA_NAME.fullmatch(entry.name)
        if match is None or _PARENT[match[3]] != match[2]:
            raise AdapterInvalid(
                f"{WEIGHTS}: tensor {name} is not a LoRA A or B weight of a supported projection",
                "unexpected_tensor",
            )
        module, side = match[3], match[4]
        if module not in config.targets:
            raise AdapterInvalid(
                f"{WEIGHTS}: tensor {name} is for {module}_proj, which target_modules does not "
                "list",
                "unexpected_tensor",
            )
        layer = _layer(match[1], num_layers)
        if layer == -1:
            raise AdapterInvalid(
                f"{WEIGHTS}: tensor {name} is for a layer beyond the base model's {num_layers}",
                "shape_mismatch",
            )
        if (layer, module, side) in found:
            raise AdapterInvalid(
                f"{WEIGHTS}: layer {layer} {module}_proj lora_{side} appears twice",
                "unexpected_tensor",
            )
        if entry.dtype not in WEIGHT_DTYPES:
            raise AdapterInvalid(
                f"{WEIGHTS}: tensor {name} is {entry.dtype}; use F32, F16 or BF16",
                "unsupported_dtype",
            )
        fan_in, fan_out = module_shapes[module]
        expected = (config.rank, fan_in) if side == "A" else (fan_out, config.rank)
        if entry.shape != expected:
            raise AdapterInvalid(
                f"{WEIGHTS}: tensor {name} has shape [{', '.join(map(str, entry.shape))}], "
                f"expected [{', '.join(map(str, expected))}]",
                "shape_mismatch",
            )
        found[(layer, module, side)] = LoraTensor(layer, module, side, entry)
    ordered = []
    for layer in range(num_layers):
        for module in config.targets:
            for side in ("A", "B"):
                tensor = found.get((layer, module, side))
                if tensor is None:
                    raise AdapterInvalid(
                        f"{WEIGHTS}: no lora_{side} weight for layer {layer} {module}_proj",
                        "missing_tensor",
                    )
                ordered.append(tensor)
    return ordered


# For IEEE floats the magnitudes order as their sign-cleared bits do, and an exponent of
# all ones (inf, NaN) sits above every finite value: one integer max per tensor.
_BITS = {"F32": ("<u4", 0x7FFFFFFF, 0x7F800000), "F16": ("<u2", 0x7FFF, 0x7C00)}
_BITS["BF16"] = ("<u2", 0x7FFF, 0x7F80)


def _magnitude(dtype: str, bits: int) -> float:
    if dtype == "F32":
        return struct.unpack("<f", struct.pack("<I", bits))[0]
    if dtype == "BF16":
        return struct.unpack("<f", struct.pack("<I", bits << 16))[0]
    return float(np.array(bits, dtype=np.uint16).view(np.float16))


def _largest_bits(entry: TensorEntry, data: memoryview | bytes) -> int:
    """The tensor's largest sign-cleared element (no view of `data` outlives the call:
    the caller may close the file's mapping while an error it raised is alive)."""
    layout, mask, _ = _BITS[entry.dtype]
    count = (entry.end - entry.begin) // np.dtype(layout).itemsize
    if count == 0:
        return 0
    return int((np.frombuffer(data, dtype=layout, count=count, offset=entry.begin) & mask).max())


def check_values(tensors: list[LoraTensor], data: memoryview | bytes, scale: float) -> None:
    """Every weight finite, |A| and |B| x scale at most MAX_WEIGHT; `data` is the data
    section. Raises AdapterInvalid for the first weight (canonical order) that is not."""
    for t in tensors:
        _, _, infinity = _BITS[t.entry.dtype]
        largest = _largest_bits(t.entry, data)
        what = f"layer {t.layer} {t.module}_proj lora_{t.side}"
        if largest >= infinity:
            raise AdapterInvalid(
                f"{WEIGHTS}: {what} holds values that are not finite", "non_finite_weights"
            )
        scaled = _magnitude(t.entry.dtype, largest) * (scale if t.side == "B" else 1)
        if scaled > MAX_WEIGHT:
            once = " once scaled" if t.side == "B" else ""
            raise AdapterInvalid(
                f"{WEIGHTS}: {what} holds values beyond {MAX_WEIGHT:g}{once} in magnitude",
                "weights_out_of_range",
            )
