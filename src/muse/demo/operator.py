"""The operator of the demo: types ``muse`` commands, edits the config, serves traffic.

The demo is executable documentation, so every step that has a command runs *that command*
after echoing it as it would be typed from the demo's output folder: through the
:data:`CommandRunner` it is given (``muse demo`` passes the CLI's own, in-process; the
default runs the console script in a subprocess, so this package never imports the CLI
that imports it). What has no command is a library call, said
so in the output: serving a week of traffic is :func:`~muse.scorelog.replay.replay_frame`
through a :class:`~muse.service.ScoringService` (the serving code path, into the score
lake), and a config change is :meth:`ScoringService.reload` — what ``POST /admin/reload``
does in a server.
"""

from __future__ import annotations

import dataclasses
import shlex
import subprocess
import sys
from collections.abc import Callable, Collection, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from rich.console import Console
from rich.markup import escape

from muse.datasets import EventFrame
from muse.demo.deployment import Stage, diff, write_config
from muse.demo.world import iso_day
from muse.errors import MuseError
from muse.scorelog import LakeReader, LakeWriter
from muse.scorelog.replay import replay_frame
from muse.service import ScoringService

__all__ = ["CommandRunner", "DemoError", "Operator", "run_in_subprocess"]

#: Runs ``muse ARGS`` and returns its exit code.
CommandRunner = Callable[[Sequence[str]], int]

#: Events scored per batch when serving a week: large batches are the fast path.
_CHUNK = 20_000


class DemoError(MuseError, RuntimeError):
    """A step of the demo did not go as the lifecycle expects (a command failed, say)."""


class Operator:
    """Runs the demo's steps under ``root`` (the ``--out`` folder), printing each one.

    ``config`` is the deployment's ``muse.yaml``; ``service`` exists once the first
    config could be served, and is reloaded, never rebuilt, on every config change.
    """

    def __init__(self, root: Path, console: Console, commands: CommandRunner | None = None) -> None:
        self.root = root
        self.console = console
        self.run_command = commands if commands is not None else run_in_subprocess
        self.deployment = root / "deployment"
        self.config = self.deployment / "muse.yaml"
        self.labels = self.deployment / "labels"
        self.reports = root / "reports"
        self.commands: list[str] = []
        self._service: ScoringService | None = None
        self._config_text = ""

    # -- printing ----------------------------------------------------------------------

    def section(self, title: str) -> None:
        self.console.print()
        self.console.rule(f"[bold]{escape(title)}")

    def say(self, text: str) -> None:
        """A line of narration (what happens and why)."""
        self.console.print(text, highlight=False, markup=False, soft_wrap=True)

    def rel(self, path: Path) -> str:
        """``path`` as typed from the output folder."""
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)

    # -- commands ----------------------------------------------------------------------

    def muse(self, *args: str | Path, expect: Collection[int] = (0,)) -> int:
        """Echo ``muse ARGS`` and run it; return its exit code, which must be in ``expect``.

        Paths are echoed relative to the output folder and passed absolute, so the run does
        not depend on the working directory and the echo can be pasted after ``cd OUT``.
        """
        shown = " ".join(shlex.quote(self.rel(a) if isinstance(a, Path) else a) for a in args)
        self.commands.append(f"muse {shown}")
        self.console.print(f"[bold cyan]$ muse {escape(shown)}[/]", highlight=False, soft_wrap=True)
        try:
            code = self.run_command([str(a) for a in args])
        except MuseError:
            raise
        except Exception as e:  # a usage error: the demo typed a bad command line
            raise DemoError(f"`muse {shown}`: {e}") from e
        if code not in expect:
            raise DemoError(f"`muse {shown}` exited with {code}, expected {sorted(expect)}")
        return code

    # -- the deployment ----------------------------------------------------------------

    def write_config(self, stage: Stage, path: Path | None = None) -> None:
        """Write ``stage``'s config to ``muse.yaml`` (or to the variant ``path``) and show
        it as the edit of the current ``muse.yaml`` it is."""
        target = path or self.config
        text = write_config(target, stage)
        if self._config_text:
            self.say(f"edit {self.rel(target)}:")
            shown = diff(self._config_text, text, self.rel(self.config), self.rel(target))
            self.console.print(shown, highlight=False, markup=False, soft_wrap=True, end="")
        else:
            self.say(f"write {self.rel(target)}:")
            self.console.print(text, highlight=False, markup=False, soft_wrap=True, end="")
        if target == self.config:
            self._config_text = text

    @property
    def service(self) -> ScoringService:
        if self._service is None:
            raise DemoError("no deployment is being served yet")
        return self._service

    def start_serving(self) -> None:
        """Load the deployment as ``muse serve`` would (every map must now exist)."""
        self._service = ScoringService.from_config(self.config)
        self.say(
            f"serving {self.rel(self.config)} (version {self._service.snapshot.version}); "
            "a server would be `muse serve deployment/muse.yaml`"
        )

    def reload(self, path: Path | None = None) -> None:
        """Swap in the config at ``path`` (default ``muse.yaml``), as ``POST /admin/reload``
        does; on error the running config keeps serving and the error propagates."""
        snapshot = self.service.reload(path or self.config)
        self.say(
            f"reload: {self.rel(path or self.config)} is live (version {snapshot.version}); "
            "a server would take POST /admin/reload (or SIGHUP)"
        )

    def serve(self, week: int, frame: EventFrame, note: str = "", lake: Path | None = None) -> int:
        """Score ``week``'s events ``frame`` through the serving code path into the lake
        (``lake``, else the config's), and write the labels the tenants send back for them."""
        service = self.service
        url = str(lake) if lake is not None else service.snapshot.config.lake_url
        if url is None:  # pragma: no cover - the demo's configs always have a lake
            raise DemoError(f"{self.config} has no lake")
        # The service rejects features no model uses (invariant 6); tenants send what the
        # deployment's models read, so m3's features only flow once m3 is deployed.
        known = service.snapshot.known_features
        sent = dataclasses.replace(
            frame, features={k: v for k, v in frame.features.items() if k in known}
        )
        with LakeWriter(
            url, max_rows_per_file=200_000, flush_interval_s=60, max_pending_rows=400_000
        ) as writer:
            rows = replay_frame(service, sent, writer, chunk=_CHUNK)
        if writer.dropped_rows or writer.lost_rows:  # pragma: no cover - replay waits instead
            raise DemoError(f"the lake dropped {writer.dropped_rows + writer.lost_rows} rows")
        tenants = ", ".join(sorted({str(t) for t in np.unique(frame.tenant)}))
        self.say(
            f"serve week {week} ({iso_day(week)} to {iso_day(week + 1)}){note}: {len(frame):,} "
            f"events of {tenants} → {rows:,} lake rows (one per event and predictor, live or "
            "shadow), scored by ScoringService.score_batch as the server scores requests"
        )
        self._write_labels(frame, self.labels / f"week-{week}.parquet")
        return rows

    def reader(self) -> LakeReader:
        """A reader of the deployment's lake, with the labels sent back so far."""
        return LakeReader(self.deployment / "lake", labels=self.labels)

    @staticmethod
    def _write_labels(frame: EventFrame, path: Path) -> None:
        """Labels of ``frame``'s events, as a tenant sends them back (a week later):
        event_id, label (int8 0/1), labelled_at (timestamp[us, UTC])."""
        path.parent.mkdir(parents=True, exist_ok=True)
        labelled_at = frame.timestamp.astype("datetime64[us]") + np.timedelta64(7, "D")
        pq.write_table(
            pa.table(
                {
                    "event_id": pa.array(frame.event_id.tolist(), pa.string()),
                    "label": pa.array(frame.label, pa.int8()),
                    "labelled_at": pa.array(labelled_at, pa.timestamp("us", tz="UTC")),
                }
            ),
            path,
        )


def run_in_subprocess(args: Sequence[str]) -> int:
    """Run ``muse ARGS`` as the console script would, in a child of this interpreter."""
    command = [sys.executable, "-c", "from muse.cli import main; main()", *args]
    return subprocess.run(command, check=False).returncode
