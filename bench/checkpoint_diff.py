#!/usr/bin/env python3
"""Where two checkpoints of one key differ: block by block, named by what holds each block.

    bench/checkpoint_diff.py CACHE_A/stages/os-KEY.qcow2 CACHE_B/stages/os-KEY.qcow2

Each checkpoint is read through its own chain (qemu-img convert to raw, in a scratch folder). The
ext2/3/4 filesystem of the largest partition (or of the whole disk) is mapped with dumpe2fs and
debugfs: every differing 4 KiB block is counted as the superblock and group descriptors, a bitmap,
the inode table, the journal, or data (file, directory and extent blocks), and the files owning the
most differing data blocks are named. In the inode tables it counts the inodes that differ in more
than their times, generation and checksum, by field offset. Needs root (losetup) and e2fsprogs.
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import subprocess
import tempfile
from pathlib import Path

BLOCK = 4096
# Inode fields that a build's clock and randomness set: a/c/m/dtime, generation, checksums,
# the extra time fields and crtime. What else differs in an inode is placement or content.
CLOCK_FIELDS = set(range(0x08, 0x18)) | set(range(0x64, 0x68)) | {0x7C, 0x7D, 0x82, 0x83}
CLOCK_FIELDS |= set(range(0x84, 0x98))
STRUCTURES = {
    "inode table": r"Inode table at (\d+)-(\d+)",
    "block bitmap": r"Block bitmap at (\d+)",
    "inode bitmap": r"Inode bitmap at (\d+)",
    "superblock, descriptors": r"uperblock at (\d+), Group descriptors at \d+-(\d+)",
}


def run(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


def root_offset(raw: Path) -> int:
    try:
        parts = json.loads(run("sfdisk", "-J", str(raw)))["partitiontable"]["partitions"]
    except (subprocess.CalledProcessError, json.JSONDecodeError, KeyError):
        return 0  # no partition table: the filesystem is the whole disk
    return int(max(parts, key=lambda p: p["size"])["start"]) * 512


def on_filesystem(raw: Path, offset: int, *commands: list[str]) -> list[str]:
    """The output of each command (e2fsprogs) with the filesystem's device appended."""
    loop = run("losetup", "--find", "--show", "--read-only", "--offset", str(offset), str(raw)).strip()
    try:
        return [run(*command, loop) for command in commands]
    finally:
        subprocess.run(["losetup", "--detach", loop], check=False)


def block_kinds(raw: Path, offset: int) -> dict[int, str]:
    dump, journal = on_filesystem(raw, offset, ["dumpe2fs"], ["debugfs", "-R", "blocks <8>"])
    kinds: dict[int, str] = {}
    for kind, pattern in STRUCTURES.items():
        for match in re.finditer(pattern, dump):
            numbers = [int(n) for n in match.groups()]
            kinds.update(dict.fromkeys(range(numbers[0], numbers[-1] + 1), kind))
    kinds.update(dict.fromkeys((int(b) for b in journal.split() if b.isdigit()), "journal"))
    return kinds


def differing_blocks(a: Path, b: Path) -> list[int]:
    found = []
    with open(a, "rb") as fa, open(b, "rb") as fb:
        position = 0
        while True:
            x, y = fa.read(1 << 20), fb.read(1 << 20)
            if not x and not y:
                return found
            if x != y:
                found += [
                    (position + i) // BLOCK
                    for i in range(0, max(len(x), len(y)), BLOCK)
                    if x[i : i + BLOCK] != y[i : i + BLOCK]
                ]
            position += 1 << 20


def inode_fields(a: Path, b: Path, offset: int, blocks: list[int]) -> collections.Counter[tuple[int, ...]]:
    fields: collections.Counter[tuple[int, ...]] = collections.Counter()
    with open(a, "rb") as fa, open(b, "rb") as fb:
        for block in blocks:
            fa.seek(offset + block * BLOCK)
            fb.seek(offset + block * BLOCK)
            x, y = fa.read(BLOCK), fb.read(BLOCK)
            for i in range(0, BLOCK, 256):
                other = {j & ~3 for j in range(256) if x[i + j] != y[i + j] and j not in CLOCK_FIELDS}
                if other:
                    fields[tuple(sorted(other))] += 1
    return fields


def name_owners(raw: Path, offset: int, data: list[int], how_many: int) -> None:
    icheck = ["debugfs", "-R", "icheck " + " ".join(map(str, data[:5000]))]
    (owners,) = on_filesystem(raw, offset, icheck)
    pairs = (line.split() for line in owners.splitlines()[1:])
    inodes = collections.Counter(pair[1] for pair in pairs if len(pair) == 2)
    top = [i for i, _ in inodes.most_common(how_many) if i.isdigit()]
    (names,) = on_filesystem(raw, offset, ["debugfs", "-R", "ncheck " + " ".join(top)]) if top else ("",)
    paths = dict(line.split(None, 1) for line in names.splitlines()[1:] if line.strip())
    print("files owning the most differing data blocks (of the first 5000):")
    for inode, n in inodes.most_common(how_many):
        print(f"  {n:6}  {paths.get(inode, '<inode ' + inode + '>')}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    parser.add_argument("--files", type=int, default=15, help="how many owning files to name")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="checkpoint-diff-") as scratch:
        raws = []
        for name, checkpoint in (("a", args.a), ("b", args.b)):
            raw = Path(scratch) / f"{name}.raw"
            run("qemu-img", "convert", "-O", "raw", str(checkpoint.resolve()), str(raw))
            raws.append(raw)
        offset = root_offset(raws[0])
        kinds = block_kinds(raws[0], offset)
        counts: collections.Counter[str] = collections.Counter()
        data, inode_blocks = [], []
        for disk_block in differing_blocks(*raws):
            if disk_block * BLOCK < offset:
                counts["before the filesystem (partition table, boot code)"] += 1
                continue
            block = disk_block - offset // BLOCK
            kind = kinds.get(block, "data, directories, extents")
            counts[kind] += 1
            if kind == "inode table":
                inode_blocks.append(block)
            elif kind.startswith("data"):
                data.append(block)
        print("differing 4 KiB blocks:", dict(counts) or "none")
        if inode_blocks:
            fields = inode_fields(*raws, offset, inode_blocks)
            print(f"inodes differing beyond clock fields: {sum(fields.values())}; by field offsets:")
            for offsets, n in fields.most_common(8):
                print(f"  {n:6}  {', '.join(hex(o) for o in offsets)}")
        if data:
            name_owners(raws[0], offset, data, args.files)


if __name__ == "__main__":
    main()
