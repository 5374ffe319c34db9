"""Deterministic corpus of JSON Schemas for the grammar-engine comparison.

random_schemas(n, seed): nested objects, arrays with minItems/maxItems, enums, anyOf/oneOf
(disjoint by type or by a const discriminator, so that oneOf's 'exactly one' holds), string
pattern/format/minLength/maxLength, required/optional, additionalProperties false, $defs/$ref,
numbers with min/max, const, nullable type lists.
tool_schemas(n, seed): OpenAI-style tool lists and the schemas that tool_choice
'required' / named function / parallel calls turn into.
"""

import json
import random

WORDS = [
    "id",
    "name",
    "city",
    "count",
    "tags",
    "price",
    "kind",
    "owner",
    "items",
    "meta",
    "email",
    "when",
    "score",
    "status",
    "user",
    "notes",
    "x",
    "y",
    "url",
    "flag",
]
PATTERNS = [
    r"^[a-z]{2,6}$",
    r"^\d{3}-\d{4}$",
    r"^[A-Z][a-z]+( [A-Z][a-z]+)?$",
    r"^(red|green|blue)-\d+$",
    r"^[0-9a-f]{8}$",
    r"^v\d+\.\d+\.\d+$",
]
FORMATS = ["date", "date-time", "time", "email", "uuid", "ipv4", "uri"]


class Gen:
    def __init__(self, rng):
        self.r = rng
        self.defs = {}

    def key(self, used):
        k = self.r.choice(WORDS)
        while k in used:
            k = self.r.choice(WORDS) + str(self.r.randrange(10))
        used.add(k)
        return k

    def scalar(self):
        r = self.r
        c = r.randrange(13)
        if c == 0:
            return {"type": "string"}
        if c == 1:
            lo = r.randrange(0, 4)
            return {"type": "string", "minLength": lo, "maxLength": lo + r.randrange(1, 12)}
        if c == 2:
            return {"type": "string", "pattern": r.choice(PATTERNS)}
        if c == 3:
            return {"type": "string", "format": r.choice(FORMATS)}
        if c == 4:
            return {
                "type": "string",
                "enum": r.sample(
                    ["a", "bb", "red", "Green", "x y", "ü", "null", "1"], r.randrange(1, 5)
                ),
            }
        if c == 5:
            lo = r.randrange(-100, 100)
            return {"type": "integer", "minimum": lo, "maximum": lo + r.randrange(0, 1000)}
        if c == 6:
            return {"type": "integer"}
        if c == 7:
            lo = round(r.uniform(-10, 10), 2)
            return {"type": "number", "minimum": lo, "maximum": round(lo + r.uniform(0.5, 50), 2)}
        if c == 8:
            return {"type": "number"}
        if c == 9:
            return {"type": "boolean"}
        if c == 10:
            return {"const": r.choice(["fixed", 3, True, None])}
        if c == 11:
            return {"type": [r.choice(["string", "integer", "boolean"]), "null"]}
        return {"enum": [1, "two", None, False][: r.randrange(2, 5)]}

    def any(self, depth):
        r = self.r
        if depth <= 0:
            return self.scalar()
        c = r.randrange(10)
        if c < 3:
            return self.obj(depth - 1)
        if c < 5:
            return self.arr(depth - 1)
        if c == 5:
            return self.anyof(depth - 1)
        if c == 6:
            return self.oneof_disc(depth - 1)
        if c == 7:
            return self.ref(depth - 1)
        return self.scalar()

    def obj(self, depth):
        r = self.r
        used = set()
        props = {self.key(used): self.any(depth) for _ in range(r.randrange(1, 6))}
        keys = list(props)
        s = {
            "type": "object",
            "properties": props,
            "required": r.sample(keys, r.randrange(0, len(keys) + 1)),
        }
        if r.random() < 0.7:
            s["additionalProperties"] = False
        if not s["required"]:
            del s["required"]
        return s

    def arr(self, depth):
        r = self.r
        s = {"type": "array", "items": self.any(depth)}
        if r.random() < 0.7:
            lo = r.randrange(0, 3)
            s["minItems"] = lo
            s["maxItems"] = lo + r.randrange(0, 4)
        return s

    def anyof(self, depth):
        return {"anyOf": [self.any(depth) for _ in range(self.r.randrange(2, 4))]}

    def oneof_disc(self, depth):
        # oneOf made exclusive by type, or by a required const 'kind' discriminator
        r = self.r
        if r.random() < 0.5:
            ts = r.sample(["string", "integer", "boolean", "null", "array"], 2)
            return {
                "oneOf": [
                    {"type": t}
                    if t != "array"
                    else {"type": "array", "items": {"type": "integer"}, "maxItems": 3}
                    for t in ts
                ]
            }
        branches = []
        for tag in r.sample(["circle", "square", "tri", "line"], r.randrange(2, 4)):
            b = self.obj(depth)
            rest = {k: v for k, v in b["properties"].items() if k != "kind"}
            b["properties"] = {"kind": {"const": tag}, **rest}
            b["required"] = ["kind"] + [k for k in b.get("required", []) if k != "kind"]
            branches.append(b)
        return {"oneOf": branches}

    def ref(self, depth):
        name = f"D{len(self.defs)}"
        self.defs[name] = None  # reserve the name before nested refs pick theirs
        self.defs[name] = self.obj(depth)
        return {"$ref": f"#/$defs/{name}"}


def random_schemas(n=200, seed=22):
    out = []
    for i in range(n):
        g = Gen(random.Random(seed * 100003 + i))
        s = g.obj(depth=1 + i % 3)
        if g.defs:
            s["$defs"] = g.defs
        out.append(s)
    return out


def tool_params(rng):
    g = Gen(rng)
    s = g.obj(depth=rng.randrange(0, 3))
    s["additionalProperties"] = False  # OpenAI strict-mode tools
    s["required"] = list(s["properties"])
    if g.defs:
        s["$defs"] = g.defs
    return s


def tool_list(rng, k):
    names = rng.sample(
        [
            "get_weather",
            "search",
            "send_email",
            "book_flight",
            "lookup_user",
            "create_event",
            "run_sql",
            "translate",
        ],
        k,
    )
    return [
        {
            "type": "function",
            "function": {
                "name": nm,
                "description": f"{nm} tool",
                "parameters": tool_params(rng),
                "strict": True,
            },
        }
        for nm in names
    ]


def call_schema(tool):
    f = tool["function"]
    return {
        "type": "object",
        "properties": {"name": {"const": f["name"]}, "arguments": f["parameters"]},
        "required": ["name", "arguments"],
        "additionalProperties": False,
    }


def tool_schemas(n=40, seed=7):
    """(label, tools, schema): tool_choice=required -> array (minItems 1) of anyOf calls;
    named function -> that one call object (as vLLM builds them)."""
    out = []
    for i in range(n):
        rng = random.Random(seed * 7919 + i)
        tools = tool_list(rng, rng.randrange(1, 5))
        if i % 2 == 0:
            # $defs of each tool's parameters are local to it; lift them to the root under
            # unique names
            calls = []
            defs = {}
            for t in tools:
                cs = json.loads(json.dumps(call_schema(t)))
                d = cs["properties"]["arguments"].pop("$defs", None)
                if d:
                    nm = t["function"]["name"]
                    txt = json.dumps(cs)
                    for k in d:
                        txt = txt.replace(f'"#/$defs/{k}"', f'"#/$defs/{nm}_{k}"')
                    cs = json.loads(txt)
                    dtxt = json.dumps(d)
                    for k in d:
                        dtxt = dtxt.replace(f'"#/$defs/{k}"', f'"#/$defs/{nm}_{k}"')
                    for k, v in json.loads(dtxt).items():
                        defs[f"{nm}_{k}"] = v
                calls.append(cs)
            s = {"type": "array", "minItems": 1, "items": {"anyOf": calls}}
            if defs:
                s["$defs"] = defs
            out.append(("required", tools, s))
        else:
            t = tools[0]
            cs = call_schema(t)
            d = cs["properties"]["arguments"].pop("$defs", None)
            if d:
                cs["$defs"] = d
            out.append(("named", tools, cs))
    return out


if __name__ == "__main__":
    rs = random_schemas()
    ts = tool_schemas()
    print(len(rs), "random;", len(ts), "tool schemas")
    print(json.dumps(rs[5])[:600])
    print(json.dumps(ts[0][2])[:600])
    import jsonschema

    for s in rs + [t[2] for t in ts]:
        jsonschema.Draft202012Validator.check_schema(s)
    print("all valid Draft 2020-12 schemas")
