"""Every size the toolkit takes from a file or a request is checked against one of these before
anything of that size is allocated. Each is far above what a real dataset needs, and far below
what would exhaust a machine.
"""

from __future__ import annotations

# Pixels of one image or mask (width x height), read from the file's header or a record before
# decoding: 2**27 is 11,585 x 11,585 (400 MB as RGB); MVTec AD 2's largest images are about
# 4,200 x 3,000. Pillow, which reads the headers, refuses over 178 M pixels on its own.
MAX_IMAGE_PIXELS = 1 << 27
# Bytes of one line of a JSON Lines file (a sample record, a prediction, a probe, a decision), and
# of a dataset's manifest.json (its problems list grows with the source's bad files).
MAX_LINE_BYTES = 64 << 20
MAX_MANIFEST_BYTES = 256 << 20
# Images one shard header may announce, and shards one build may be cut into.
MAX_IMAGES = 10_000_000
MAX_SHARDS = 100_000
# A review app request: body bytes, and JSON nesting (a decision is two levels deep).
MAX_REQUEST_BYTES = 64 << 10
MAX_REQUEST_DEPTH = 8


def processes(workers: int, jobs: int) -> int:
    """Worker processes actually started for ``jobs`` pieces of work when ``workers`` were asked
    for: never more than the jobs, nor four per CPU core (every command's output is the same for
    any number of workers, so the cap changes nothing but memory)."""
    import os

    return max(1, min(workers, jobs, 4 * (os.cpu_count() or 1)))
