"""The operator console: fleet, routes, tenants' alignment, candidates and refresh decisions
in the browser, with promote and rollback (``muse console``).

A separate web app of the control plane (the ``console`` extra): it reads the deployment
store, the active version's config, the score lake (summarised file by file, never scanned
per page view) and the replicas' admin endpoints, and acts only through the fleet's own
operations (:func:`muse.fleet.promote`, :func:`muse.fleet.rollback`).
"""

from muse.console.state import ConsoleState

__all__ = ["ConsoleState", "create_app"]


def __getattr__(name: str) -> object:
    # The web stack (Starlette templates, Jinja2, itsdangerous) loads only when the app is
    # built, so the state and views import without the console extra's web pieces.
    if name == "create_app":
        from muse.console.app import create_app

        return create_app
    raise AttributeError(name)
