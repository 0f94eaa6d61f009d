"""Which AMD GPUs a process uses, as ROCm reads its visibility variables.

ROCm's runtimes compose three variables (ROCm "GPU isolation techniques"; PyTorch's
``torch.cuda._parse_visible_devices`` under ROCm does the same):

- ``ROCR_VISIBLE_DEVICES``: device indices or UUIDs (``GPU-<serial>``), applied first, by the
  ROCm runtime; it reduces the devices the next variable selects from.
- ``HIP_VISIBLE_DEVICES``, else ``CUDA_VISIBLE_DEVICES`` (HIP reads it too): device indices
  (or UUIDs) exposed to HIP; an index counts among the devices ``ROCR_VISIBLE_DEVICES`` left.

So ``ROCR_VISIBLE_DEVICES=2,3`` with ``HIP_VISIBLE_DEVICES=1`` is physical device 3. As for
CUDA, parsing stops at the first invalid entry; an empty value means no GPU. A UUID matches
the device whose ``asic_serial`` (without ``0x``) it names or uniquely begins, compared
without case, as PyTorch matches them.

HIP numbers devices as AMD SMI's ``amdsmi_get_gpu_enumeration_info`` reports in ``hip_id``
(ROCm 6.4 and later); before that AMD SMI gives no mapping and its own order is used, which
the report says when there are several GPUs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_INDEX = re.compile(r"\d+")

ROCR = "ROCR_VISIBLE_DEVICES"
HIP = "HIP_VISIBLE_DEVICES"
CUDA = "CUDA_VISIBLE_DEVICES"


def _entries(value: str) -> list[str]:
    """The entries of a visibility variable before the first syntactically invalid one."""
    tokens: list[str] = []
    for raw in value.split(","):
        token = raw.strip()
        if not (_INDEX.fullmatch(token) or token.upper().startswith("GPU-")):
            break
        tokens.append(token)
    return tokens


def visible_devices(env: Mapping[str, str]) -> tuple[list[str] | None, str]:
    """``(tokens, how)``: the physical devices this process sees, as indices (HIP's
    numbering of all devices) or ``GPU-…`` UUIDs; None when no variable restricts them.

    Example:
        >>> visible_devices({"ROCR_VISIBLE_DEVICES": "2,3", "HIP_VISIBLE_DEVICES": "1"})
        (['3'], 'ROCR_VISIBLE_DEVICES=2,3, HIP_VISIBLE_DEVICES=1')
    """
    rocr = env.get(ROCR)
    hip_name = HIP if env.get(HIP) is not None else CUDA
    hip = env.get(hip_name)
    named = ((ROCR, rocr), (hip_name, hip))
    parts = [f"{name}={value}" for name, value in named if value is not None]
    how = ", ".join(parts) or "all devices"
    base = None if rocr is None else _entries(rocr)
    if hip is None:
        return base, how
    chosen: list[str] = []
    for token in _entries(hip):
        if base is None or not _INDEX.fullmatch(token):
            chosen.append(token)
        elif int(token) < len(base):
            chosen.append(base[int(token)])
        else:
            break  # an index past what ROCR_VISIBLE_DEVICES left: HIP stops there too
    return chosen, how


def match_serial(token: str, serials: list[str]) -> int | None:
    """The position in `serials` (``asic_serial`` values, ``0x…``) of the device UUID
    `token` (``GPU-…``) names or uniquely begins; None when none or several match."""
    wanted = token[4:].lower()
    found = [i for i, s in enumerate(serials) if s.lower().removeprefix("0x").startswith(wanted)]
    return found[0] if len(found) == 1 else None
