"""The values whose mapping the tests pin down: each must read back
identically from Python, the command line and typed Rust
(tests/python_values.rs holds the same values as Rust types, and
data/values.json is their snapshot)."""

import math

NAMESPACE = "values"

VALUES = {
    "integers": {
        "small": 7,
        "negative": -1,
        "safe_max": 2**53 - 1,
        "beyond_safe": 2**53,
        "u64_max": 2**64 - 1,
        "i64_min": -(2**63),
    },
    "floats": [0.1, -0.0, 1e300, 5e-324, 2.0, math.nan, math.inf, -math.inf],
    "bytes": b"\x00\x01\xfe\xff statelog",
    "unicode": 'naïve ☃ 𝄞 e\u0301 \t\n "quoted" \\ \x01',
    "nested": {
        "task": "task_123",
        "stages": [
            {"name": "audio", "done": True, "artifacts": ["audio/task_123.wav"]},
            {"name": "video", "done": False, "artifacts": []},
        ],
        "progress": 0.5,
        "owner": None,
    },
    "int_keys": {-3: "minus three", 1: "one", 2: "two"},
    "dollar_key": {"$int": "not an escape"},
    "empty": {"dict": {}, "list": [], "text": "", "none": None},
    "bools": [True, False],
    # Beyond 64 bits: what i128 and u128 hold (typed in Rust) ...
    "wide_integers": {
        "u64_max_plus_one": 2**64,
        "i64_min_minus_one": -(2**63) - 1,
        "i128_max": 2**127 - 1,
        "i128_min": -(2**127),
        "u128_max": 2**128 - 1,
    },
    # ... and beyond: the largest and smallest integers stored, and 2^200 + 1.
    "wider_integers": [2**8191 - 1, -(2**8191), 2**200 + 1],
}


def same(a, b):
    """Equal as stored values: types must match (1 is not 1.0 nor True),
    floats bit for bit (NaN equals NaN, -0.0 is not 0.0), dict order too."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return len(a) == len(b) and all(
            same(ka, kb) and same(va, vb)
            for (ka, va), (kb, vb) in zip(a.items(), b.items())
        )
    return a == b
