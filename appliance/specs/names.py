"""Name rules copied from Azure ML."""

from __future__ import annotations

import re

from appliance.specs.errors import SpecError

ENDPOINT_NAME = re.compile(r"^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$")
ASSET_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9\-_.]{0,254}$")
ASSET_VERSION = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9\-_.]{0,29}$")


def check_endpoint_name(value: str, field: str = "name") -> str:
    """Endpoints and deployments: 3-32 chars, a letter first, letters, digits and '-'."""
    if not (3 <= len(value) <= 32) or not ENDPOINT_NAME.fullmatch(value):
        raise SpecError(
            f"invalid name {value!r}: use 3-32 letters, digits and '-', starting with a letter "
            "and not ending with '-'", field=field)
    return value


def check_asset_name(value: str, field: str = "name") -> str:
    if not ASSET_NAME.fullmatch(value):
        raise SpecError(
            f"invalid name {value!r}: use up to 255 letters, digits, '-', '_' and '.', "
            "starting with a letter or digit", field=field)
    return value


def check_asset_version(value: str, field: str = "version") -> str:
    if not ASSET_VERSION.fullmatch(value):
        raise SpecError(
            f"invalid version {value!r}: use up to 30 letters, digits, '-', '_' and '.'", field=field)
    return value
