"""Reading RUN/metrics.jsonl, which may come from anyone: line by line, bad lines skipped and
counted.

A run folder may be downloaded, hand-edited or damaged: a line cut by a crash, a byte that is not
UTF-8, `{"step": Infinity}` (Python's json reads it), a step of 1e308 or 10**30 (no int64 holds
it), a line of gigabytes. Each such line is skipped and counted, the good lines are kept, and
the file is opened only if it is a regular file (a FIFO would block the reader forever).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..errors import GanZooError
from ..util.regular_files import open_regular
from ..util.textsafe import shown

MAX_LINE_BYTES = 1 << 20  # a logged record is a few hundred bytes; a longer line is skipped
MAX_STEP = 2**62  # what int64 arrays (and every plot) hold with room to spare


@dataclass
class MetricsReading:
    """What reading one metrics file found: the skipped lines and why the first was."""

    skipped: int = 0
    first_problem: str | None = None

    def skip(self, line_no: int, why: str) -> None:
        self.skipped += 1
        if self.first_problem is None:
            self.first_problem = f"line {line_no}: {why}"

    def note(self, name: str = "metrics.jsonl") -> str | None:
        """One line for a reader, or None when every line was read."""
        if not self.skipped:
            return None
        return (f"{name}: skipped {self.skipped} unreadable line(s) (first: "
                f"{self.first_problem})")


def _problem(record: Any) -> str | None:
    """Why a parsed line is not a record gan-zoo can use, or None."""
    if not isinstance(record, dict):
        return "not a JSON object"
    step = record.get("step")
    if isinstance(step, bool) or not isinstance(step, int):
        if isinstance(step, float) and not math.isfinite(step):
            return "its step is not a finite number"
        return f"its step {shown(str(step), 40)} is not a whole number"
    if not 0 <= step < MAX_STEP:
        return f"its step {shown(str(step), 40)} is out of range"
    return None


def _lines(fh: Any) -> Iterator[tuple[int, bytes | None]]:
    """(line number, bytes) of each line; None for a line over MAX_LINE_BYTES (never held)."""
    line_no = 0
    while True:
        line = fh.readline(MAX_LINE_BYTES + 1)
        if not line:
            return
        line_no += 1
        if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
            while line and not line.endswith(b"\n"):  # drop the rest of the long line
                line = fh.readline(MAX_LINE_BYTES)
            yield line_no, None
            continue
        yield line_no, line


def iter_metrics(path: str | os.PathLike, reading: MetricsReading | None = None
                 ) -> Iterator[dict[str, Any]]:
    """The records of a metrics file, in order; bad lines are counted in `reading`.

    A missing file has no records; one that is not a regular file, or cannot be opened, is a
    GanZooError."""
    reading = reading if reading is not None else MetricsReading()
    try:
        fh = open_regular(path, "rb")
    except FileNotFoundError:
        return
    except OSError as exc:
        raise GanZooError(f"cannot read {shown(str(path))}: {exc.strerror or exc}") from None
    with fh:
        for line_no, line in _lines(fh):
            if line is None:
                reading.skip(line_no, f"longer than {MAX_LINE_BYTES} bytes")
                continue
            if not line.strip():
                continue
            try:
                record = json.loads(line.decode("utf-8"))
            except UnicodeDecodeError:
                reading.skip(line_no, "not UTF-8 text")
                continue
            except (ValueError, RecursionError):
                reading.skip(line_no, "not valid JSON (or cut short)")
                continue
            problem = _problem(record)
            if problem:
                reading.skip(line_no, problem)
                continue
            yield record
