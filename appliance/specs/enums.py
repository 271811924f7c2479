"""Enum spellings as Azure's schema takes them: case-insensitive, CamelCase or snake_case.

azure-ai-ml reads an enum field through `camel_to_snake(value).lower()`, so `auth_mode: Key`,
`AMLToken`, `aml_token`, `os_type: Linux` and `type: Managed` are all accepted. Here every value of a
`Literal` string field (and of the few plain-string fields with known values) is rewritten to the
spelling the spec declares before msgspec converts it; a value matching none is left as it came, so
the conversion error still names it and the allowed values.
"""

from __future__ import annotations

from typing import Any

import msgspec

# Plain `str` fields whose Azure values are nonetheless an enum: (struct name, field) → the values.
KNOWN: dict[tuple[str, str], tuple[str, ...]] = {
    ("ModelSpec", "type"): ("custom_model", "mlflow_model", "triton_model"),
}


def _key(value: str) -> str:
    """What two spellings of one enum value share: `AMLToken`, `aml_token`, `AmlToken` → `amltoken`."""
    return value.replace("_", "").replace("-", "").lower()


def canonical(value: Any, allowed: tuple[Any, ...]) -> Any:
    """`value` in the spelling of the member of `allowed` it names, or `value` itself."""
    if not isinstance(value, str) or value in allowed:
        return value
    key = _key(value)
    matches = [a for a in allowed if isinstance(a, str) and _key(a) == key]
    return matches[0] if len(matches) == 1 else value


def _structs(info: Any) -> list[msgspec.inspect.StructType]:
    return [t for t in getattr(info, "types", (info,)) if isinstance(t, msgspec.inspect.StructType)]


def _literals(info: Any) -> tuple[Any, ...]:
    for t in getattr(info, "types", (info,)):
        if isinstance(t, msgspec.inspect.LiteralType):
            return tuple(t.values)
    return ()


def normalise(cls: type, body: Any) -> Any:
    """A copy of `body` (a document's mapping) with its enum values in the spelling `cls` declares."""
    return _walk(msgspec.inspect.type_info(cls), body)


def _walk(info: Any, body: Any) -> Any:
    structs = _structs(info)
    if not structs or not isinstance(body, dict):
        return body
    st = structs[0]
    fields = {f.encode_name: f.type for f in st.fields}
    out = dict(body)
    for key, value in body.items():
        ftype = fields.get(key)
        if ftype is None:
            continue
        allowed = _literals(ftype) or KNOWN.get((st.cls.__name__, key), ())
        if allowed and isinstance(value, str):
            out[key] = canonical(value, allowed)
        elif isinstance(value, dict):
            out[key] = _walk(ftype, value)
    return out
