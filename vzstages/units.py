"""Sizes and durations as people write them, parsed in one place.

Sizes: `512MiB`, `8GiB`, `20G` are binary (2^20, 2^30 ...), as bootstrap-vz's manifests and
qemu-img mean them; `KB`, `MB`, `GB`, `TB` are decimal (10^3, 10^6 ...), as disk vendors mean
them; a bare number is bytes. Durations: `30s`, `30m`, `12h`, `7d`, `2w`.
"""

from __future__ import annotations

import re

KiB, MiB, GiB, TiB = 1 << 10, 1 << 20, 1 << 30, 1 << 40
UNITS = {
    "": 1,
    "B": 1,
    "K": KiB,
    "KiB": KiB,
    "M": MiB,
    "MiB": MiB,
    "G": GiB,
    "GiB": GiB,
    "T": TiB,
    "TiB": TiB,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "TB": 1000**4,
}
_SIZE = re.compile(r"(\d{1,15}(?:\.\d{1,6})?)\s*([KMGT]?i?B|[KMGT]|)", re.ASCII)
_AGE = re.compile(r"(\d{1,9}(?:\.\d{1,6})?)\s*([smhdw])", re.ASCII)
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_size(text: str) -> int:
    """Bytes in a size such as 512MiB, 20G or 4GB; ValueError saying the forms if it is not one."""
    match = _SIZE.fullmatch(text.strip())
    if not match or match.group(2) not in UNITS:
        raise ValueError(f"not a size: {text!r} (use e.g. 512MiB, 20G or 4GB)")
    return int(float(match.group(1)) * UNITS[match.group(2)])


def parse_age(text: str) -> float:
    """Seconds in a duration such as 30m, 12h, 7d or 2w."""
    match = _AGE.fullmatch(text.strip())
    if not match:
        raise ValueError(f"not a duration: {text!r} (use e.g. 30m, 12h, 7d or 2w)")
    return float(match.group(1)) * _SECONDS[match.group(2)]


def human_size(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.0f}{unit}" if unit == "B" else f"{size:.1f}{unit}"
        size /= 1024
    return f"{size:.1f}TiB"


def human_age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(max(seconds, 0))}s"
