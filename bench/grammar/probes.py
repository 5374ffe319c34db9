"""One JSON Schema keyword per probe: (name, schema, valid instance, instance violating only that
keyword). An engine 'enforces' a keyword when it accepts the valid text and rejects the invalid
one, 'ignores' it (silently unless it warned) when it accepts both, 'refuses' when compile fails,
and is 'over-strict' when it rejects the valid text. Instances are compact JSON in schema order."""

OBJ = "object"


def obj(props, req=None, **kw):
    s = {"type": OBJ, "properties": props, "required": req if req is not None else list(props)}
    s["additionalProperties"] = False
    s.update(kw)
    return s


PROBES = [
    (
        "minLength/maxLength",
        obj({"s": {"type": "string", "minLength": 2, "maxLength": 4}}),
        {"s": "abc"},
        {"s": "abcdef"},
    ),
    (
        "pattern",
        obj({"s": {"type": "string", "pattern": "^[a-z]+-\\d{2}$"}}),
        {"s": "ab-12"},
        {"s": "ab-1"},
    ),
    (
        "pattern unanchored",
        obj({"s": {"type": "string", "pattern": "\\d{3}"}}),
        {"s": "x123y"},
        {"s": "x12y"},
    ),
    (
        "pattern lookahead",
        obj({"s": {"type": "string", "pattern": "^(?=.*\\d)[a-z0-9]{4,}$"}}),
        {"s": "abc1"},
        {"s": "abcd"},
    ),
    (
        "pattern backreference",
        obj({"s": {"type": "string", "pattern": "^(a+)b\\1$"}}),
        {"s": "aabaa"},
        {"s": "aaba"},
    ),
    (
        "pattern + minLength/maxLength",
        obj({"s": {"type": "string", "pattern": "^[a-z]+$", "minLength": 2, "maxLength": 3}}),
        {"s": "abc"},
        {"s": "abcd"},
    ),
    (
        "format + maxLength",
        obj({"s": {"type": "string", "format": "email", "maxLength": 8}}),
        {"s": "a@b.co"},
        {"s": "abcdef@example.com"},
    ),
    (
        "format date",
        obj({"s": {"type": "string", "format": "date"}}),
        {"s": "2024-02-29"},
        {"s": "2024-13-40"},
    ),
    (
        "format date-time",
        obj({"s": {"type": "string", "format": "date-time"}}),
        {"s": "2024-01-02T03:04:05Z"},
        {"s": "yesterday"},
    ),
    (
        "format time",
        obj({"s": {"type": "string", "format": "time"}}),
        {"s": "03:04:05Z"},
        {"s": "25:99"},
    ),
    (
        "format email",
        obj({"s": {"type": "string", "format": "email"}}),
        {"s": "a.b@example.com"},
        {"s": "not-an-email"},
    ),
    (
        "format uuid",
        obj({"s": {"type": "string", "format": "uuid"}}),
        {"s": "123e4567-e89b-12d3-a456-426614174000"},
        {"s": "123"},
    ),
    (
        "format ipv4",
        obj({"s": {"type": "string", "format": "ipv4"}}),
        {"s": "10.0.0.1"},
        {"s": "999.1.1.1"},
    ),
    ("format ipv6", obj({"s": {"type": "string", "format": "ipv6"}}), {"s": "::1"}, {"s": "zz::1"}),
    (
        "format uri",
        obj({"s": {"type": "string", "format": "uri"}}),
        {"s": "https://a.b/c"},
        {"s": "no scheme"},
    ),
    (
        "format hostname",
        obj({"s": {"type": "string", "format": "hostname"}}),
        {"s": "a.example"},
        {"s": "-bad_"},
    ),
    (
        "format unknown (x-foo)",
        obj({"s": {"type": "string", "format": "x-foo"}}),
        {"s": "anything"},
        None,
    ),
    (
        "integer minimum/maximum",
        obj({"n": {"type": "integer", "minimum": 3, "maximum": 17}}),
        {"n": 17},
        {"n": 18},
    ),
    (
        "integer exclusiveMinimum",
        obj({"n": {"type": "integer", "exclusiveMinimum": 3}}),
        {"n": 4},
        {"n": 3},
    ),
    (
        "number minimum/maximum",
        obj({"n": {"type": "number", "minimum": -1.5, "maximum": 2.25}}),
        {"n": 2.25},
        {"n": 2.5},
    ),
    (
        "number exclusiveMaximum",
        obj({"n": {"type": "number", "exclusiveMaximum": 1}}),
        {"n": 0.99},
        {"n": 1},
    ),
    ("multipleOf", obj({"n": {"type": "integer", "multipleOf": 5}}), {"n": 15}, {"n": 16}),
    ("enum", obj({"e": {"enum": ["a", 1, None]}}), {"e": 1}, {"e": 2}),
    ("const", obj({"c": {"const": "k"}}), {"c": "k"}, {"c": "j"}),
    ("type list nullable", obj({"t": {"type": ["string", "null"]}}), {"t": None}, {"t": 1}),
    (
        "minItems/maxItems",
        obj({"a": {"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": 2}}),
        {"a": [1]},
        {"a": [1, 2, 3]},
    ),
    (
        "uniqueItems",
        obj({"a": {"type": "array", "items": {"type": "integer"}, "uniqueItems": True}}),
        {"a": [1, 2]},
        {"a": [1, 1]},
    ),
    (
        "contains",
        obj({"a": {"type": "array", "items": {"type": "integer"}, "contains": {"const": 7}}}),
        {"a": [7]},
        {"a": [1]},
    ),
    (
        "prefixItems+items:false",
        obj(
            {
                "a": {
                    "type": "array",
                    "prefixItems": [{"type": "integer"}, {"type": "string"}],
                    "items": False,
                }
            }
        ),
        {"a": [1, "x"]},
        {"a": [1, 2]},
    ),
    (
        "minProperties",
        {
            "type": OBJ,
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "minProperties": 1,
            "additionalProperties": False,
        },
        {"a": 1},
        {},
    ),
    (
        "maxProperties",
        {"type": OBJ, "additionalProperties": {"type": "integer"}, "maxProperties": 1},
        {"a": 1},
        {"a": 1, "b": 2},
    ),
    ("additionalProperties false", obj({"a": {"type": "integer"}}), {"a": 1}, {"a": 1, "z": 2}),
    (
        "additionalProperties schema",
        {"type": OBJ, "additionalProperties": {"type": "integer"}},
        {"k": 1},
        {"k": "s"},
    ),
    (
        "required",
        {
            "type": OBJ,
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["b"],
            "additionalProperties": False,
        },
        {"b": 1},
        {"a": 1},
    ),
    (
        "patternProperties",
        {
            "type": OBJ,
            "patternProperties": {"^x_": {"type": "integer"}},
            "additionalProperties": False,
        },
        {"x_a": 1},
        {"y": 1},
    ),
    (
        "propertyNames",
        {
            "type": OBJ,
            "propertyNames": {"pattern": "^[a-z]+$"},
            "additionalProperties": {"type": "integer"},
        },
        {"ab": 1},
        {"AB": 1},
    ),
    (
        "dependentRequired",
        {
            "type": OBJ,
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "dependentRequired": {"a": ["b"]},
            "additionalProperties": False,
        },
        {"a": 1, "b": 2},
        {"a": 1},
    ),
    (
        "if/then/else",
        {
            "type": OBJ,
            "properties": {"t": {"type": "string"}, "v": {"type": "integer"}},
            "required": ["t", "v"],
            "if": {"properties": {"t": {"const": "big"}}},
            "then": {"properties": {"v": {"minimum": 100}}},
            "additionalProperties": False,
        },
        {"t": "big", "v": 100},
        {"t": "big", "v": 1},
    ),
    ("not", obj({"s": {"type": "string", "not": {"const": "bad"}}}), {"s": "ok"}, {"s": "bad"}),
    (
        "allOf",
        obj({"n": {"allOf": [{"type": "integer", "minimum": 0}, {"maximum": 5}]}}),
        {"n": 5},
        {"n": 6},
    ),
    ("allOf type in branch", obj({"n": {"allOf": [{"type": "integer"}]}}), {"n": 5}, {"n": "s"}),
    (
        "allOf object intersection",
        {
            "allOf": [
                obj({"a": {"type": "integer"}}, additionalProperties=True),
                {"type": OBJ, "properties": {"b": {"type": "string"}}, "required": ["b"]},
            ]
        },
        {"a": 1, "b": "x"},
        {"a": 1},
    ),
    (
        "$ref with sibling maxLength",
        {"$defs": {"S": {"type": "string"}}, **obj({"s": {"$ref": "#/$defs/S", "maxLength": 2}})},
        {"s": "ab"},
        {"s": "abc"},
    ),
    (
        "anyOf beside properties (xgrammar #858)",
        {
            "type": OBJ,
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "additionalProperties": False,
            "anyOf": [{"required": ["a"]}, {"required": ["b"]}],
        },
        {"a": 1},
        {"c": 1},
    ),
    (
        "patternProperties+properties+additionalProperties:false (llguidance #265)",
        {
            "type": OBJ,
            "properties": {
                "score": {"type": "integer", "multipleOf": 5},
                "tags": {
                    "type": "array",
                    "items": {"type": "string", "minLength": 10, "maxLength": 20},
                },
            },
            "required": ["score", "tags"],
            "additionalProperties": False,
            "patternProperties": {"^score$": {"type": "integer"}},
        },
        {"score": 5, "tags": ["abcdefghij"]},
        {"score": 5, "tags": ["abc"]},
    ),
    (
        "anyOf",
        obj({"u": {"anyOf": [{"type": "integer"}, {"type": "string", "maxLength": 2}]}}),
        {"u": "ab"},
        {"u": "abc"},
    ),
    (
        "oneOf disjoint",
        obj({"u": {"oneOf": [{"type": "integer"}, {"type": "string"}]}}),
        {"u": 3},
        {"u": True},
    ),
    (
        "oneOf overlapping",
        obj({"u": {"oneOf": [{"type": "integer"}, {"type": "number"}]}}),
        {"u": 1.5},
        {"u": 1},
    ),
    (
        "$ref/$defs",
        {"$defs": {"P": obj({"x": {"type": "integer"}})}, **obj({"p": {"$ref": "#/$defs/P"}})},
        {"p": {"x": 1}},
        {"p": {"x": "1"}},
    ),
    (
        "$ref recursive",
        {
            "$defs": {
                "T": {
                    "type": OBJ,
                    "properties": {
                        "v": {"type": "integer"},
                        "kids": {"type": "array", "items": {"$ref": "#/$defs/T"}, "maxItems": 2},
                    },
                    "required": ["v"],
                    "additionalProperties": False,
                }
            },
            "$ref": "#/$defs/T",
        },
        {"v": 1, "kids": [{"v": 2}]},
        {"v": 1, "kids": [{"w": 2}]},
    ),
    ("$ref remote", obj({"p": {"$ref": "https://example.com/s.json"}}), {"p": 1}, None),
    (
        "unevaluatedProperties false",
        {"type": OBJ, "properties": {"a": {"type": "integer"}}, "unevaluatedProperties": False},
        {"a": 1},
        {"a": 1, "b": 2},
    ),
    ("unknown keyword", obj({"s": {"type": "string", "x-unknown-kw": 1}}), {"s": "a"}, None),
    (
        "contentEncoding base64",
        obj({"s": {"type": "string", "contentEncoding": "base64"}}),
        {"s": "YQ=="},
        None,
    ),
    (
        "default/title/description/examples",
        obj(
            {
                "s": {
                    "type": "string",
                    "default": "x",
                    "title": "T",
                    "description": "D",
                    "examples": ["e"],
                }
            }
        ),
        {"s": "a"},
        None,
    ),
    (
        "no additionalProperties (open object)",
        {"type": OBJ, "properties": {"a": {"type": "integer"}}, "required": ["a"]},
        {"a": 1, "z": 2},
        None,
    ),
    ("empty schema {}", {}, {"any": [1, "x", None]}, None),
    ("json_object mode {type:object}", {"type": OBJ}, {"k": [1, {"z": None}]}, [1]),
    (
        "integer huge bounds",
        obj({"n": {"type": "integer", "minimum": -9007199254740991, "maximum": 9007199254740991}}),
        {"n": 12345678901},
        {"n": 1.5},
    ),
    (
        "string maxLength 10000",
        obj({"s": {"type": "string", "maxLength": 10000}}),
        {"s": "a"},
        None,
    ),
    (
        "array maxItems 10000",
        obj({"a": {"type": "array", "items": {"type": "integer"}, "maxItems": 10000}}),
        {"a": [1]},
        None,
    ),
]
