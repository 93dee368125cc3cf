"""``kfp-edge serve-web [MODEL_DIR]``: the browser client (``web/``) and a model, on 127.0.0.1.

The page runs the model in the browser with LiteRT.js (``@litertjs/core``, installed by
``npm ci`` in ``web/``; nothing is fetched at run time). The server sends ``.wasm`` as
``application/wasm`` and every response with the COOP/COEP headers that make the page
cross-origin isolated: without them threaded wasm fails (``SharedArrayBuffer is not
defined``) and ``performance.now()`` moves in 100 µs steps.

``MODEL_DIR`` is a published model version (``models/<name>/<version>``), a variants directory
or one .tflite file; without it, the latest version of ``--name`` in ``--workspace``. Every
.tflite found is offered: its browser-ready copy (``model.browser.tflite`` in a release) when
there is one, else a copy pinned to batch 1 made in a temporary directory (MODEL_DIR is only
read). Models LiteRT.js cannot run are listed with the reasons.
"""

from __future__ import annotations

import functools
import json
import tempfile
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from kfp_edge import browser_model
from kfp_edge.model_versions import MANIFEST_FILE, PREPROCESSING_FILE, models_root
from kfp_edge.workspace import DEFAULT_LOCAL_WORKSPACE

WEB_DIR = Path(__file__).resolve().parents[1] / "web"
LITERT_JS = Path("node_modules") / "@litertjs" / "core" / "dist" / "index.js"
BROWSER_SUFFIX = ".browser.tflite"
CROSS_ORIGIN_HEADERS = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
}


def check_web_dir(web_dir: Path) -> Path:
    """Returns the web client's directory once its npm packages are installed.

    Raises:
        FileNotFoundError: If the client or LiteRT.js is missing (says how to install it).
    """
    if not (web_dir / "index.html").is_file():
        raise FileNotFoundError(f"{web_dir / 'index.html'}: the web client is missing")
    if not (web_dir / LITERT_JS).is_file():
        raise FileNotFoundError(
            f"{web_dir / LITERT_JS}: LiteRT.js is not installed; run `npm ci` in {web_dir}"
        )
    return web_dir


def _describe(version_dir: Path) -> dict:
    """Returns the classes and feature names of a published version (empty when unknown)."""
    info: dict = {}
    manifest = version_dir / MANIFEST_FILE
    if manifest.is_file():
        data = json.loads(manifest.read_text())
        info["model_name"], info["version"] = data.get("name"), data.get("version")
        classes = (data.get("evaluation") or {}).get("classes")
        if classes:
            info["classes"] = [str(c) for c in classes]
    preprocessing = version_dir / PREPROCESSING_FILE
    if preprocessing.is_file():
        columns = json.loads(preprocessing.read_text()).get("feature_columns")
        if columns:
            info["feature_columns"] = [str(c) for c in columns]
    return info


def _io_details(path: Path) -> dict:
    """Returns the input/output quantization the client needs for uint8 or int32 models."""
    from kfp_edge.litert import TFLiteModel

    model = TFLiteModel(path)
    return {
        "num_features": model.num_features,
        "num_classes": model.num_classes,
        "input_quantization": [float(v) for v in model.input_quantization],
        "output_quantization": [float(v) for v in model.output_quantization],
    }


def collect_models(model_dir: Path, copies_dir: Path) -> tuple[list[dict], dict[str, Path]]:
    """Finds the models of ``model_dir`` and their browser-ready copies.

    Args:
        model_dir: A published version, a variants directory or one .tflite file.
        copies_dir: Where pinned copies of models without one are written.

    Returns:
        ``(index, files)``: the entries of ``/models/index.json`` (``{"name", "source",
        "browser_ready", "reasons", "url", ...}``) and the served file of each URL.

    Raises:
        FileNotFoundError: If ``model_dir`` does not exist or holds no .tflite file.
    """
    if not model_dir.exists():
        raise FileNotFoundError(f"{model_dir}: no such model directory or file")
    root = model_dir if model_dir.is_dir() else model_dir.parent
    found = [model_dir] if model_dir.is_file() else sorted(model_dir.rglob("*.tflite"))
    sources = [p for p in found if not p.name.endswith(BROWSER_SUFFIX)]
    if not sources:
        raise FileNotFoundError(f"{model_dir}: no .tflite model to serve")
    info = _describe(root)
    index, files = [], {}
    for source in sources:
        rel = source.relative_to(root).as_posix()
        name = rel.removesuffix(".tflite")
        entry = {"name": name, "source": rel, **browser_model.browser_check(source)}
        if entry["browser_ready"]:
            own = source.with_name(
                browser_model.BROWSER_MODEL_FILE
                if source.name == "model.tflite"
                else source.name.removesuffix(".tflite") + BROWSER_SUFFIX
            )
            if not own.is_file():
                own = copies_dir / f"{len(files)}{BROWSER_SUFFIX}"
                browser_model.make_browser_ready(source, own)
            url = f"/models/{len(files)}{BROWSER_SUFFIX}"
            files[url] = own
            entry.update(url=url, browser_file=str(own), **_io_details(source), **info)
        index.append(entry)
    return index, files


class _Handler(SimpleHTTPRequestHandler):
    """Static files of the web client plus ``/models/``; cross-origin isolated."""

    extensions_map = {
        **SimpleHTTPRequestHandler.extensions_map,
        ".wasm": "application/wasm",
        ".js": "text/javascript",
        ".mjs": "text/javascript",
        ".tflite": "application/octet-stream",
        ".json": "application/json",
    }

    def __init__(self, *args, index: bytes, files: dict[str, Path], **kwargs):
        self.index, self.files = index, files
        super().__init__(*args, **kwargs)

    def end_headers(self):
        for key, value in CROSS_ORIGIN_HEADERS.items():
            self.send_header(key, value)
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def do_GET(self):  # noqa: N802 (the http.server API)
        path = self.path.split("?", 1)[0]
        if not path.startswith("/models/"):
            return super().do_GET()
        if path == "/models/index.json":
            body, kind = self.index, "application/json"
        elif path in self.files:
            body, kind = self.files[path].read_bytes(), "application/octet-stream"
        else:
            return self.send_error(404, f"no model at {path}")
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):  # noqa: A002 (the http.server API)
        if not getattr(self.server, "quiet", False):
            super().log_message(format, *args)


class WebServer:
    """The web client and the models of one directory, served on 127.0.0.1 in a thread.

    Args:
        model_dir: A published version, a variants directory or one .tflite file.
        port: TCP port (0 picks a free one; see :attr:`url`).
        web_dir: The web client (``web/`` of this project, with ``npm ci`` done).
        quiet: Do not log requests.

    Raises:
        FileNotFoundError: A missing web client, LiteRT.js or model (named).
        ValueError: A .tflite file that does not load (named).
    """

    def __init__(self, model_dir, port: int = 0, web_dir: Path = WEB_DIR, quiet: bool = False):
        web_dir = check_web_dir(Path(web_dir))
        self._copies = tempfile.TemporaryDirectory(prefix="kfp-edge-web-")
        try:
            self.models, files = collect_models(Path(model_dir), Path(self._copies.name))
        except BaseException:
            self._copies.cleanup()
            raise
        # The page gets no local paths: the browser file is known to the server only.
        index = [{k: v for k, v in m.items() if k != "browser_file"} for m in self.models]
        handler = functools.partial(
            _Handler, index=json.dumps(index).encode(), files=files, directory=str(web_dir)
        )
        try:
            self.httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
        except OSError as exc:
            self._copies.cleanup()
            raise ValueError(f"127.0.0.1:{port}: cannot listen: {exc.strerror or exc}") from exc
        self.httpd.quiet = quiet
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> WebServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stops the server and removes the temporary copies."""
        if self._thread.is_alive():
            self.httpd.shutdown()
        self.httpd.server_close()
        self._copies.cleanup()


def default_model_dir(workspace: str, name: str | None) -> Path:
    """Returns the latest published version of ``name`` (or of the only model) in a workspace.

    Raises:
        FileNotFoundError: If the store is empty, the model has no versions, or ``name`` is
            needed to choose among several models.
    """
    from kfp_edge.model_versions import PublishedModels

    store = PublishedModels(models_root(workspace))
    names = store.names()
    if name is None:
        if len(names) != 1:
            raise FileNotFoundError(
                f"{store.root}: {'no published models' if not names else 'several models'}; "
                f"give MODEL_DIR or --name (one of {names})"
            )
        name = names[0]
    return store.get(name)


def register(subparsers) -> None:
    """Adds ``serve-web`` to the ``kfp-edge`` command line."""
    p = subparsers.add_parser(
        "serve-web", help="open a model in the browser (LiteRT.js) on 127.0.0.1"
    )
    p.add_argument("model_dir", nargs="?", default=None, help="version dir, variants dir or file")
    p.add_argument("--workspace", default=DEFAULT_LOCAL_WORKSPACE, help="without MODEL_DIR")
    p.add_argument("--name", default=None, help="model name in the store, without MODEL_DIR")
    p.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (0: any free one)")
    p.add_argument(
        "--measure",
        type=int,
        default=0,
        metavar="RUNS",
        help="time RUNS calls per model in headless Chromium, print them and exit (a run's "
        "variants/ directory also gets them in its evaluation.json)",
    )
    p.set_defaults(func=_cmd_serve_web)


def _cmd_serve_web(args) -> int:
    model_dir = Path(args.model_dir) if args.model_dir else None
    if model_dir is None:
        model_dir = default_model_dir(args.workspace, args.name)
    if args.measure:
        from kfp_edge.app.browser_run import print_measured

        return print_measured(model_dir, args.measure)
    server = WebServer(model_dir, port=args.port)
    for entry in server.models:
        state = "browser-ready" if entry["browser_ready"] else "not runnable in the browser: "
        print(f"  {entry['name']}: {state}{'; '.join(entry['reasons'])}")
    print(f"serving {model_dir} at {server.url} (Ctrl-C stops)", flush=True)
    with server:
        try:
            server._thread.join()
        except KeyboardInterrupt:
            pass
    return 0
