"""The work plan: which documents each task builds from, in which order tasks run, which shard each record goes to.

Instead of holding every instance in memory for one global shuffle (Google's scripts), the documents are shuffled,
cut into chunks of about INSTANCE_CHUNK_TOKENS tokens, the (copy, chunk) tasks run in a shuffled order and each
task's records are shuffled and dealt round-robin over the shards, so that consecutive records of a shard come from
random places of the corpus while memory stays bounded. Chunks have a fixed size (not derived from the number of
workers), which keeps the output independent of `--workers`.
"""

import dataclasses

import numpy as np

from keras_albert.data.pretraining import streams

INSTANCE_CHUNK_TOKENS = 50_000


@dataclasses.dataclass(frozen=True)
class Task:
    """One unit of instance building: a copy (`dupe_factor`) of a chunk of documents, at `position` of the plan."""

    copy: int
    chunk: int
    documents: np.ndarray
    position: int


def plan_tasks(corpus, settings):
    """Every task, in the seeded order they run in; a task's position decides which shard each of its records goes
    to (`shard_positions`)."""
    plan_key = streams.key(streams.key(settings.seed & streams.MASK64, 1 << 32), 0)
    order = streams.permutation(corpus.num_documents, streams.key(plan_key, 0))
    document_tokens = np.diff(corpus.sentence_starts[corpus.document_starts])[order]
    chunk_of = np.cumsum(document_tokens) // INSTANCE_CHUNK_TOKENS
    bounds = np.flatnonzero(np.diff(chunk_of)) + 1
    chunks = np.split(order, bounds)
    tasks = [(copy, index, chunk) for copy in range(settings.dupe_factor) for index, chunk in enumerate(chunks)]
    shuffled = streams.permutation(len(tasks), streams.key(plan_key, 1)).tolist()
    return [Task(*tasks[task], position=position) for position, task in enumerate(shuffled)]


def shard_positions(shard, count, num_shards, position):
    """The positions p among a task's `count` shuffled records that go to `shard`: (position + p) mod num_shards
    is the shard, for the task at `position` of the plan (`run_task` in `_instances.c` deals the same way)."""
    return range((shard - position) % num_shards, count, num_shards)


def shard_major(count, num_shards, position):
    """Positions 0..count-1 of a task's shuffled records regrouped by shard: the task's records for shard 0 come
    first, then shard 1's..."""
    return [p for shard in range(num_shards) for p in shard_positions(shard, count, num_shards, position)]


def records_per_shard(count, num_shards, position):
    """How many of a task's `count` records each shard gets."""
    return [len(shard_positions(shard, count, num_shards, position)) for shard in range(num_shards)]
