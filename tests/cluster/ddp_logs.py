"""What a DistributedDataParallel process says about its process group, read from its log.

With ``TORCH_DISTRIBUTED_DEBUG=INFO`` (and ``TORCH_CPP_LOG_LEVEL=INFO``) every rank logs the block
``[Rank N]: DDP Initialized with:`` followed by ``key: value`` lines (rank, world_size, backend_name,
master_addr, ...) once its model is wrapped, which happens only after the process group has formed.
"""

import re

DDP_ENV = [{"name": "TORCH_CPP_LOG_LEVEL", "value": "INFO"}, {"name": "TORCH_DISTRIBUTED_DEBUG", "value": "INFO"}]
_HEADER = re.compile(r"\[Rank \d+\]: DDP Initialized with: *$")
_FIELD = re.compile(r"^(\w+): ?(.*)$")


def ddp_settings(log: str) -> dict[str, str]:
    """The fields of the log's first `DDP Initialized with:` block ({} when the process never wrapped a model)."""
    lines = log.splitlines()
    start = next((i for i, line in enumerate(lines) if _HEADER.search(line)), None)
    if start is None:
        return {}
    fields: dict[str, str] = {}
    for line in lines[start + 1 :]:
        match = _FIELD.match(line)
        if not match:
            break
        fields[match[1]] = match[2]
    return fields
