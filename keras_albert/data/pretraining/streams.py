"""Counter-based random streams, the same in Python, NumPy and the compiled builder (`_instances.c`).

`draw(key, i)` is splitmix64's finalizer of `key + (i + 1) * golden ratio` (mod 2^64); a stream's key derives from its
parent's and a child number (`key`). Every draw of a run is addressed by (seed, copy, document chunk, stream,
counter), so the records do not depend on how work is split between processes, how rows are grouped or in which
order they are visited: a compiled loop over rows draws what a NumPy loop over steps draws.
"""

import numpy as np

MASK64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
REPLACE_COUNTER = 1 << 40  # masked token k's draws: REPLACE_COUNTER + 2k and + 2k + 1


def mix64(z):
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def key(parent, child):
    """The key of stream `child` under `parent`."""
    return mix64((parent + mix64((child + GOLDEN) & MASK64)) & MASK64)


def draw(stream_key, counter):
    return mix64((stream_key + (counter + 1) * GOLDEN) & MASK64)


def below(x, span):
    """A draw to an integer in [0, span), span < 2^32: the high 32 bits, scaled."""
    return ((x >> 32) * span) >> 32


class Stream:
    """Sequential draws from one stream (`Stream` in `_instances.c`)."""

    def __init__(self, stream_key):
        self.key, self.counter = stream_key, 0

    def next(self):
        self.counter += 1
        return draw(self.key, self.counter - 1)

    def random(self):
        return (self.next() >> 11) * 2.0**-53

    def randint(self, low, high):
        return low + below(self.next(), high - low + 1)

    def bits(self, count):
        """Set bits among `count` random bits: Binomial(count, 0.5)."""
        total = 0
        while count > 0:
            x = self.next()
            total += (x & ((1 << count) - 1) if count < 64 else x).bit_count()
            count -= 64
        return total


def _mix64_array(z):
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def keys(parent, children):
    """`key(parent, child)` for an array of children."""
    with np.errstate(over="ignore"):
        children = np.asarray(children).astype(np.uint64)
        return _mix64_array(np.uint64(parent) + _mix64_array(children + np.uint64(GOLDEN)))


def draws(stream_keys, counters):
    """`draw` element-wise over arrays (or scalars) of keys and counters."""
    with np.errstate(over="ignore"):
        counters = np.asarray(counters).astype(np.uint64)
        return _mix64_array(np.asarray(stream_keys, np.uint64) + (counters + np.uint64(1)) * np.uint64(GOLDEN))


def uniform_array(x):
    return (x >> np.uint64(11)).astype(np.float64) * 2.0**-53


def below_array(x, span):
    return (((x >> np.uint64(32)) * np.asarray(span).astype(np.uint64)) >> np.uint64(32)).astype(np.int64)


def permutation(count, stream_key):
    """A random permutation of range(count): the indices sorted by a draw each."""
    return np.argsort(draws(stream_key, np.arange(count)), kind="stable")


def shuffled_order(count, stream_key):
    """Fisher-Yates over range(count), position i drawing counter i of the stream."""
    order = list(range(count))
    for i in range(count - 1, 0, -1):
        j = below(draw(stream_key, i), i + 1)
        order[i], order[j] = order[j], order[i]
    return order
