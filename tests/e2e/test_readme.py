"""The README's `curl` examples, run against `muse serve` on the quickstart as `make serve`
starts it: every response is exactly what the README shows (a served map is thinned to the
server's `map_tolerance`, so the served score is not the library's exact-map score)."""

from __future__ import annotations

from pathlib import Path

from tests.config_fixtures import Deployment as Quickstart
from tests.e2e.support import MuseProcess, readme_examples


def test_the_readme_has_its_examples() -> None:
    assert [body["event_id"] for _, body, _ in readme_examples()] == ["evt-1", "evt-2"]


def test_the_readme_examples_answer_what_it_shows(tmp_path: Path) -> None:
    quickstart = Quickstart.copy_quickstart(tmp_path / "quickstart")
    server = MuseProcess(quickstart.config, tmp_path / "serve.log").start()
    try:
        with server.client() as client:
            for path, body, shown in readme_examples():
                response = client.post(path, json=body)
                assert response.status_code == 200, response.text
                assert response.json() == shown, f"README example {body['event_id']}"
    finally:
        server.stop()
