"""Read an offline wandb run from its local files: the records of ``run-<id>.wandb``.

The file is wandb's transaction log: a 7-byte header (":W&B", magic, version), then 32 KiB blocks of
LevelDB-log records (crc32 of type+data, little-endian uint16 length, type: 1 full, 2 first, 3 middle,
4 last), each carrying a piece of a serialized ``wandb_internal_pb2.Record``.
"""

import struct
import zlib
from pathlib import Path

from wandb.proto import wandb_internal_pb2

BLOCK = 32768
HEADER = 7


def wandb_records(path: Path) -> list[wandb_internal_pb2.Record]:
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a wandb transaction log"
    records, pending, offset = [], b"", HEADER
    while offset + HEADER <= len(data):
        room = BLOCK - offset % BLOCK
        if room < HEADER:  # the rest of a block too short for a record header is padding
            offset += room
            continue
        checksum, length, kind = struct.unpack("<IHB", data[offset:offset + HEADER])
        if length == 0 and kind == 0:
            break
        chunk = data[offset + HEADER:offset + HEADER + length]
        assert zlib.crc32(bytes([kind]) + chunk) & 0xFFFFFFFF == checksum, f"bad checksum at {offset} in {path}"
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
        offset += HEADER + length
    return records
