"""Reads the records of an offline W&B run file (``run-<id>.wandb``): a W&B header, then a
LevelDB-style log (32 KiB blocks of checksum/length/type-framed chunks) of ``Record`` protobufs."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path

from wandb.proto import wandb_internal_pb2

BLOCK = 32768
HEADER = 7  # the file's W&B header, and each chunk's header
FULL, LAST = 1, 4


def records(path: Path) -> Iterator[wandb_internal_pb2.Record]:
    data = path.read_bytes()
    pos, pending = HEADER, b""
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        _, length, kind = struct.unpack("<IHB", data[pos:pos + HEADER]) if left >= HEADER else (0, 0, 0)
        if kind == 0:  # block padding
            pos += left
            continue
        pending += data[pos + HEADER:pos + HEADER + length]
        pos += HEADER + length
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def run_info(path: Path) -> dict:
    """The run's id, group and name, and its config (W&B's own keys left out)."""
    info: dict = {"config": {}}
    for record in records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            info.update(id=record.run.run_id, group=record.run.run_group, name=record.run.display_name)
        elif kind == "config":
            info["config"].update({item.key: json.loads(item.value_json) for item in record.config.update if item.key != "_wandb"})
    return info


def history_keys(path: Path) -> set[str]:
    """Every key the run logged to its history."""
    return {item.key or "/".join(item.nested_key) for record in records(path)
            if record.WhichOneof("record_type") == "history" for item in record.history.item}
