"""The shard files: named, created under temporary names, filled at offsets in task order, renamed when complete.

Not written through `keras_albert.io`: several processes write into each file at offsets; the rename when all is
written still means a reader never sees a partial shard under its final name.
"""

import os
import re

import numpy as np

from keras_albert.data.pretraining import plan
from keras_albert.errors import UserInputError

SHARD_NAME = "part-{index:05d}-of-{count:05d}.tfrecord"
SHARD_PATTERN = re.compile(r"part-\d{5}-of-(\d{5})\.tfrecord$")
TEMPORARY_PATTERN = re.compile(r"\.part-\d{5}-of-\d{5}\.tfrecord\.tmp$")


def prepare_output_dir(output_dir, num_shards):
    """The shard paths under `output_dir` (created); refuses a directory holding another run's shards."""
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise UserInputError(f"--output_dir: {output_dir} exists and is not a directory")
    os.makedirs(output_dir, exist_ok=True)
    for name in os.listdir(output_dir):
        if TEMPORARY_PATTERN.match(name):  # a killed run's unfinished shard (never under the final name)
            os.unlink(os.path.join(output_dir, name))
            continue
        match = SHARD_PATTERN.match(name)
        if match and int(match.group(1)) != num_shards:
            raise UserInputError(
                f"--output_dir: {output_dir} holds shards of another run ({name}); use an empty directory"
            )
    return [os.path.join(output_dir, SHARD_NAME.format(index=i, count=num_shards)) for i in range(num_shards)]


def pwrite_all(descriptor, data, offset):
    while data:  # a short write (rare on a regular file): the remainder
        written = os.pwrite(descriptor, data, offset)
        data, offset = data[written:], offset + written


def write_slices(blob, placements, descriptor_of):
    """Slices of `blob` into shard files: (shard, file offset, start, end) each; `descriptor_of(shard)` opens."""
    view = memoryview(blob)
    for shard, offset, start, end in placements:
        pwrite_all(descriptor_of(shard), view[start:end], offset)


class ShardWriter:
    """Appends each task's records to the shards, in the plan's task order whatever order tasks finish in.

    A task's records arrive grouped by shard (`plan.shard_major`), so each shard gets one slice of the task's bytes,
    at the shard's current end. `placements` says where; the bytes are written here (`write`) or, when a worker
    process holds them, by that process (`pool.WorkerPool.write_held`), with positional writes into the temporary
    files, which `commit` renames.
    """

    def __init__(self, paths):
        self.paths = paths
        self.temporary = [os.path.join(os.path.dirname(p), "." + os.path.basename(p) + ".tmp") for p in paths]
        self.files = [os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644) for path in self.temporary]
        self.sizes = [0] * len(paths)

    def placements(self, ends, position):
        """(shard, file offset, start, end) of each shard's slice of a task's records ending at `ends`; the task is
        at `position` of the plan. Reserves the room: the next task's slices go after."""
        per_shard = plan.records_per_shard(len(ends), len(self.paths), position)
        last = np.cumsum(per_shard) - 1  # the index of each shard's last record
        where, start = [], 0
        for shard, (records, last_record) in enumerate(zip(per_shard, last.tolist())):
            if records:
                end = int(ends[last_record])
                where.append((shard, self.sizes[shard], start, end))
                self.sizes[shard] += end - start
                start = end
        return where

    def write(self, blob, placements):
        write_slices(blob, placements, self.files.__getitem__)

    def close(self):
        for descriptor in self.files:
            os.close(descriptor)
        self.files = []

    def commit(self):
        for temporary, path in zip(self.temporary, self.paths):
            os.replace(temporary, path)

    def abort(self):
        try:
            self.close()
        except OSError:
            pass
        self.discard()

    def discard(self):
        for temporary in self.temporary:
            if os.path.exists(temporary):
                os.unlink(temporary)
