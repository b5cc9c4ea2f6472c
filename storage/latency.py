"""Latency histograms with log-spaced buckets: merged by adding counts, so any window's
percentiles can be built from pre-aggregated pieces.

Bucket 0 holds latencies up to `MIN_MS` (and zero); bucket i > 0 holds latencies in
(MIN_MS·γ^(i-1), MIN_MS·γ^i], with γ = (1 + α) / (1 - α) and α = `RELATIVE_ERROR`. The value
reported for bucket i is 2·MIN_MS·γ^i / (γ + 1), which is within α of every latency in the
bucket.

Error bound. Counts are exact, so a percentile's rank is exact (nearest rank: the
⌈p/100 · n⌉-th smallest latency); only the value inside the chosen bucket is approximate. The
reported p50/p95/p99 is therefore within ±1 % (relative) of the exact percentile of the raw
rows for latencies from 0.01 ms to 24 h; below 0.01 ms it is off by at most 0.01 ms; latencies
above 24 h are counted in the top bucket and reported as 24 h.
"""

from __future__ import annotations

import math
import struct
import sys
import zlib
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from itertools import accumulate, compress

RELATIVE_ERROR = 0.01
GAMMA = (1 + RELATIVE_ERROR) / (1 - RELATIVE_ERROR)
MIN_MS = 0.01
MAX_MS = 86_400_000.0
_LOG_GAMMA = math.log(GAMMA)
BUCKETS = math.ceil(math.log(MAX_MS / MIN_MS) / _LOG_GAMMA) + 1
PERCENTILES = (50, 95, 99)

# Blobs are little-endian on every machine, so a database file can move between machines.
_SWAP = sys.byteorder != "little"
_OFFSET = struct.Struct("<I")


def bucket_of(ms: float) -> int:
    if ms <= MIN_MS:
        return 0
    index = math.ceil(math.log(ms / MIN_MS) / _LOG_GAMMA)
    return index if index < BUCKETS else BUCKETS - 1


def bucket_value(index: int) -> float:
    if index <= 0:
        return 0.0
    return 2 * MIN_MS * GAMMA**index / (GAMMA + 1)


def rank(count: int, percent: int) -> int:
    """The 1-based nearest rank of a percentile, in integers so 95 % of 100 is 95, not 96."""
    return max(1, (count * percent + 99) // 100)


def percentiles(
    counts: Mapping[int, int], wanted: Iterable[int] = PERCENTILES
) -> dict[int, float | None]:
    """The value of each wanted percentile (an integer percent) of a histogram."""
    if not counts:
        return {percent: None for percent in wanted}
    indexes, values = list(counts), list(counts.values())
    if indexes != sorted(indexes):
        # Histograms read from storage come in bucket order already (a fleet's thousand
        # percentiles skip this sort); a hand-made one may not.
        ordered = sorted(counts.items())
        indexes, values = [index for index, _ in ordered], [count for _, count in ordered]
    running = list(accumulate(values))
    total = running[-1]
    if total <= 0:
        return {percent: None for percent in wanted}
    return {
        percent: bucket_value(indexes[bisect_left(running, rank(total, percent))])
        for percent in wanted
    }


def add_into(total: dict[int, int], counts: Mapping[int, int], sign: int = 1) -> None:
    for index, count in counts.items():
        value = total.get(index, 0) + sign * count
        if value:
            total[index] = value
        else:
            total.pop(index, None)


def encode_dense(counts: Mapping[int, int]) -> bytes:
    """A histogram as stored: its lowest used bucket, then uint64 counts from there to its
    highest, compressed (zero counts and high-order zero bytes shrink to little).

    One format for a tool's hour and a server's running totals, so that any number of them
    can be added (or subtracted) as big integers, one 64-bit lane per bucket: see
    `merge_dense` and `RunningHistogram`."""
    used = [index for index, count in counts.items() if count]
    if not used:
        return b""
    low, high = min(used), max(used)
    dense = array("Q", bytes(8 * (high - low + 1)))
    for index in used:
        dense[index - low] = counts[index]
    if _SWAP:
        dense.byteswap()
    return _OFFSET.pack(low) + zlib.compress(dense.tobytes(), 1)


def decode_dense(blob: bytes | None) -> dict[int, int]:
    if not blob:
        return {}
    (low,) = _OFFSET.unpack_from(blob)
    dense = array("Q")
    dense.frombytes(zlib.decompress(blob[_OFFSET.size :]))
    if _SWAP:
        dense.byteswap()
    return {index: count for index, count in enumerate(dense, low) if count}


class RunningHistogram:
    """A stored running histogram, kept as one integer of 64-bit little-endian lanes (exactly
    its stored bytes), one lane per bucket from `low`.

    A later running histogram is at least the earlier one in every bucket, so one big-integer
    subtraction takes the difference of every lane at once without borrows: what happened in
    between, for the price of a C loop instead of a Python one per bucket.
    """

    __slots__ = ("lanes", "low", "size")

    def __init__(self, low: int = 0, size: int = 0, lanes: int = 0) -> None:
        self.low, self.size, self.lanes = low, size, lanes

    @classmethod
    def decode(cls, blob: bytes | None) -> RunningHistogram:
        if not blob:
            return cls()
        (low,) = _OFFSET.unpack_from(blob)
        data = zlib.decompress(blob[_OFFSET.size :])
        return cls(low, len(data) // 8, int.from_bytes(data, "little"))

    def since(self, earlier: RunningHistogram) -> dict[int, int]:
        """The histogram of the calls counted here but not yet in `earlier`."""
        if not self.size:
            return {}
        lanes = self.lanes
        if earlier.size:
            # The earlier range lies within this one: buckets are only ever added.
            lanes -= earlier.lanes << (64 * (earlier.low - self.low))
        counts = array("Q", lanes.to_bytes(8 * self.size, "little"))
        if _SWAP:
            counts.byteswap()
        values = counts.tolist()
        # Only the buckets used, picked in C: most lanes of a span are empty, and every reader
        # of the histogram (a fleet's thousand percentiles) then walks fewer of them.
        return dict(
            zip(
                compress(range(self.low, self.low + self.size), values),
                filter(None, values),
                strict=True,
            )
        )


def merge_dense(blobs: Iterable[bytes | None]) -> dict[int, int]:
    """The sum of stored histograms: each is one big integer of 64-bit lanes, shifted to its
    lowest bucket, so the whole sum is additions in C (no lane overflows below 2^64 calls)."""
    total = 0
    for blob in blobs:
        if blob:
            (low,) = _OFFSET.unpack_from(blob)
            lanes = int.from_bytes(zlib.decompress(blob[_OFFSET.size :]), "little")
            total += lanes << (64 * low)
    if not total:
        return {}
    size = (total.bit_length() + 63) // 64
    counts = array("Q", total.to_bytes(8 * size, "little"))
    if _SWAP:
        counts.byteswap()
    return {index: count for index, count in enumerate(counts) if count}
