"""A watch stream cut into its events: one JSON line each, however the
stream is cut into chunks, and no line longer than any object can be."""

from __future__ import annotations

# The longest watch event read (one JSON line). The API server stores no
# object over etcd's request limit (1.5 MiB by default) and takes no request
# body over 3 MiB; an event's JSON is larger than the stored object (base64
# data, escaping, managed fields). aiohttp's own line limit (512 KiB) is less
# than a Secret may hold: any tenant could blind a cluster-wide watch with
# one large object.
MAX_WATCH_EVENT_BYTES = 16 * 1024 * 1024


class WatchEventTooLarge(Exception):
    """A watch event longer than MAX_WATCH_EVENT_BYTES: not an object the API
    server could have stored. The caller lists again (a list has no line)."""


class WatchLines:
    """The lines (events) of a watch stream, however it is cut into chunks;
    a line may be `limit` bytes long."""

    def __init__(self, limit: int, source: str) -> None:
        self._limit = limit
        self._source = source
        self._pending = bytearray()  # the start of a line: no newline yet

    def feed(self, chunk: bytes) -> list[bytearray]:
        """The lines that `chunk` completes, without blank ones, each copied
        once (json.loads takes a bytearray, and the whitespace around it)."""
        if b"\n" not in chunk:
            self._pending += chunk
            self._check(len(self._pending))
            return []
        data = self._pending + chunk
        lines: list[bytearray] = []
        begin, search_from = 0, len(self._pending)
        while (end := data.find(b"\n", search_from)) >= 0:
            self._check(end - begin)
            line = data[begin:end]
            if line and not line.isspace():
                lines.append(line)
            begin = search_from = end + 1
        self._pending = data[begin:]
        self._check(len(self._pending))
        return lines

    def _check(self, length: int) -> None:
        if length > self._limit:
            raise WatchEventTooLarge(
                f"a watch event of {self._source} is larger than {self._limit} bytes, "
                "more than the API server stores in one object"
            )
