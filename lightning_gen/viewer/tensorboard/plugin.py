"""Samples for TensorBoard: the TensorBoard plugin that serves the dashboard's page and the runs' records.

TensorBoard finds `SamplesPlugin` through the package's ``tensorboard_plugins`` entry point, serves its routes
under ``/data/plugin/lightning_gen_samples/`` and, when the **Samples** tab is opened, loads ``index.js`` in an
iframe and calls its ``render()``. The page fetches JSON from the routes below; it builds every text into the
page as text, never as HTML.

Routes (``run`` is a run's directory relative to the logdir; ``tag`` defaults to ``samples``):

- ``/runs``: the runs that have a records file (``samples.jsonl``, or ``evaluations.jsonl``).
- ``/tags?run=``: the run's tags.
- ``/prompts?run=&tag=``: index, prompt and reference of each prompt (and both made visible).
- ``/steps?run=&tag=``: the sampled steps.
- ``/samples?run=[&run=...]&tag=[&prompt=][&step=[&nearest=1]][&tokens=1]``: the records, of one prompt and/or
  one step if asked (``nearest``: each run's sampled step nearest to it), their texts made visible (`shown`;
  ``tokens``: each completion token by token too).
- ``/compare?run=&tag=&old=&new=``: every prompt at two steps, the greedy completions diffed, their similarity.
- ``/evaluations?run=``: `TaskMonitor`'s evaluations of the run: the evaluated steps, ``core`` and each task's
  metrics at each step (none for a run without an ``evaluations.jsonl``).
- ``/flips?run=&old=&new=[&task=]``: per task, the examples learned and forgotten between two evaluated steps,
  their texts made visible, the model's picks and the gold (a ``bits_per_byte`` task: its documents' bits per byte).
- ``/index.js`` and the other modules, ``/style.css``: the page, served from the package (no network).

Texts reach the page already made visible and diffed, by the rule and the diff the terminal uses
(`lightning_gen.text.visible`, `lightning_gen.text.diff`); the page only lays them out.

Only a logdir on the local file system is read (``--logdir``; not ``--logdir_spec`` or a remote URL).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tensorboard.backend import http_util
from tensorboard.plugins import base_plugin
from typing_extensions import override
from werkzeug import Request, Response

from lightning_gen.viewer.tensorboard.store import RecordsStore

__all__ = ["PLUGIN_NAME", "SamplesPlugin"]

#: The plugin's name: its routes' prefix and the TensorBoard URL fragment (``/#lightning_gen_samples``).
PLUGIN_NAME = "lightning_gen_samples"
TAB_NAME = "Samples"

_STATIC = Path(__file__).parent / "static"
_ASSETS = {f"/{path.name}": "text/javascript" if path.suffix == ".js" else "text/css"
           for path in sorted(_STATIC.iterdir()) if path.suffix in (".js", ".css")}


def _int_arg(request: Request, name: str) -> int | None:
    value = request.args.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"`{name}` must be an integer, got {value!r}") from None


def _required_int(request: Request, name: str, what: str = "a sampled step (see /steps)") -> int:
    value = _int_arg(request, name)
    if value is None:
        raise ValueError(f"`{name}` is required: {what}")
    return value


class SamplesPlugin(base_plugin.TBPlugin):
    """Samples for TensorBoard: a **Samples** tab showing the prompts' samples of every run under the logdir.

    Active when a records file (``samples.jsonl``, or ``evaluations.jsonl``) exists under the logdir. Reads the
    records, not the event files, so every round is shown whatever TensorBoard's ``--samples_per_plugin``.

    Example::

        >>> import tempfile
        >>> from tensorboard.plugins import base_plugin
        >>> plugin = SamplesPlugin(base_plugin.TBContext(logdir=tempfile.mkdtemp()))
        >>> plugin.is_active(), sorted(plugin.get_plugin_apps())[:3]
        (False, ['/compare', '/curve.js', '/evaluations'])
    """

    plugin_name = PLUGIN_NAME

    def __init__(self, context: base_plugin.TBContext) -> None:
        self._store = RecordsStore(context.logdir)

    @override
    def is_active(self) -> bool:
        return self._store.has_records()

    @override
    def frontend_metadata(self) -> base_plugin.FrontendMetadata:
        return base_plugin.FrontendMetadata(es_module_path="/index.js", tab_name=TAB_NAME)

    @override
    def get_plugin_apps(self) -> dict[str, Callable[..., Any]]:
        apps = {
            "/runs": self._json(lambda request: self._store.runs()),
            "/tags": self._json(lambda request: self._store.tags(self._run(request))),
            "/prompts": self._json(lambda request: self._store.prompts(self._run(request), self._tag(request))),
            "/steps": self._json(lambda request: self._store.steps(self._run(request), self._tag(request))),
            "/samples": self._json(self._samples),
            "/compare": self._json(lambda request: self._store.compare(
                self._run(request), self._tag(request), _required_int(request, "old"), _required_int(request, "new"))),
            "/evaluations": self._json(lambda request: self._store.evaluations(self._run(request))),
            "/flips": self._json(self._flips),
        }
        apps.update({route: self._asset(route, content_type) for route, content_type in _ASSETS.items()})
        return apps

    @staticmethod
    def _run(request: Request) -> str:
        run = request.args.get("run")
        if run is None:
            raise ValueError("`run` is required: a run's directory relative to the logdir (see /runs)")
        return run

    @staticmethod
    def _tag(request: Request) -> str:
        return request.args.get("tag", "samples")

    def _samples(self, request: Request) -> list[dict[str, Any]]:
        runs = request.args.getlist("run") or [self._run(request)]
        return self._store.samples(runs, self._tag(request), prompt=_int_arg(request, "prompt"),
                                   step=_int_arg(request, "step"), nearest=request.args.get("nearest") == "1",
                                   tokens=request.args.get("tokens") == "1")

    def _flips(self, request: Request) -> list[dict[str, Any]]:
        what = "an evaluated step (see /evaluations)"
        return self._store.flips(self._run(request), _required_int(request, "old", what),
                                 _required_int(request, "new", what), request.args.get("task"))

    @staticmethod
    def _json(answer: Callable[[Request], Any]) -> Callable[..., Any]:
        """A WSGI app answering ``answer(request)`` as JSON; a bad argument is a 400 whose body says which."""

        @Request.application
        def app(request: Request) -> Response:
            try:
                content = answer(request)
            except (KeyError, ValueError) as err:
                message = err.args[0] if err.args else str(err)
                return http_util.Respond(request, {"error": message}, "application/json", code=400)
            return http_util.Respond(request, content, "application/json")

        return app

    @staticmethod
    def _asset(route: str, content_type: str) -> Callable[..., Any]:
        @Request.application
        def app(request: Request) -> Response:
            return http_util.Respond(request, (_STATIC / route.lstrip("/")).read_bytes(), content_type)

        return app
