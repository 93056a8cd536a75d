"""``sercaf serve``: an emotion model behind HTTP, with micro-batching.

:func:`create_app` builds a FastAPI application around an
:class:`~sercaf_toolkit.deployment.inference.EmotionPredictor`:

- ``POST /predict``: an audio file, as the request body or as the one
  file of a ``multipart/form-data`` form; JSON back: ``label``,
  ``score``, ``probabilities``, ``flag``, ``duration`` and, for a
  recording longer than the long threshold, its ``segments`` (speech and
  non-speech, as ``sercaf predict`` writes them).
- ``GET /health``, ``GET /labels``; ``GET /``: a web page that uploads a
  file or records from the microphone and shows the answer (no external
  assets: it works offline).

Concurrent requests are *micro-batched*: each waits in a bounded queue; a
worker takes up to ``max_batch`` of them, waiting at most ``max_wait_ms``
for more once it has one, and labels them in one forward pass (the
predictor batches by length; a batched result equals the one-file
result). A full queue answers 503 at once; an upload over ``max_bytes``
or audio over ``max_seconds`` 413; audio that cannot be used 400, naming
the problem. Every request gets exactly one answer.

Needs the ``serve`` extra: ``pip install -e ".[serve]"``.

Authors
 * sercaf-toolkit developers 2026
"""

import asyncio
import importlib
import os
import tempfile
import time
from importlib import resources

import soundfile

from sercaf_toolkit.data import AudioError, read_checked
from sercaf_toolkit.errors import UserError

INSTALL_HINT = 'pip install -e ".[serve]"'
SAMPLE_RATE = 16000


def require_serve():
    """Imports FastAPI and uvicorn, or fails in one line saying how.

    Raises
    ------
    UserError
        When the ``serve`` extra is not installed.
    """
    for module in ("fastapi", "uvicorn", "python_multipart"):
        try:
            importlib.import_module(module)
        except ImportError:
            raise UserError(
                f"{module} is not installed; sercaf serve needs FastAPI, "
                f"uvicorn and python-multipart: {INSTALL_HINT}"
            ) from None


def page():
    """The web page served at ``/`` (HTML, its script and style inline)."""
    return (
        resources.files("sercaf_toolkit.deployment")
        .joinpath("serve_page.html")
        .read_text(encoding="utf-8")
    )


class Refused(Exception):
    """A request answered with an HTTP error status and a message."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


def answer(records, labels):
    """The JSON answer for one file from its ``sercaf predict`` records.

    A short recording's one record gives the label and probabilities; a
    long one's speech segments give the duration-weighted mean of their
    probabilities, and the segments themselves.

    Example
    -------
    >>> rows = [{"start": 0.0, "end": 2.0, "speech": "", "label": "a",
    ...          "score": 0.75, "prob_a": 0.75, "prob_b": 0.25,
    ...          "flag": "", "error": ""}]
    >>> answer(rows, ["a", "b"])["probabilities"]
    {'a': 0.75, 'b': 0.25}
    """
    scored = [r for r in records if r["score"] is not None]
    result = {
        "duration": records[-1]["end"],
        "label": None,
        "score": None,
        "probabilities": None,
        "flag": ";".join(sorted({r["flag"] for r in records if r["flag"]})),
    }
    if scored:
        weights = [max(r["end"] - r["start"], 1e-9) for r in scored]
        total = sum(weights)
        probs = {
            label: sum(w * r[f"prob_{label}"] for w, r in zip(weights, scored))
            / total
            for label in labels
        }
        best = max(labels, key=probs.__getitem__)
        result.update(label=best, score=probs[best], probabilities=probs)
    if len(records) > 1 or records[0]["speech"]:
        result["segments"] = [
            {
                "start": r["start"],
                "end": r["end"],
                "speech": r["speech"],
                "label": r["label"] or None,
                "score": r["score"],
                "probabilities": (
                    {label: r[f"prob_{label}"] for label in labels}
                    if r["score"] is not None
                    else None
                ),
                "flag": r["flag"],
            }
            for r in records
        ]
    return result


class MicroBatcher:
    """Labels queued waveforms in batches, one batch at a time.

    Arguments
    ---------
    predictor : EmotionPredictor
        The model; only the worker uses it.
    max_batch : int
        Most requests in one batch.
    max_wait_ms : float
        How long a batch waits for more requests once it has one.
    max_queue : int
        Most requests waiting; more are refused (503).
    """

    def __init__(self, predictor, max_batch=8, max_wait_ms=10, max_queue=64):
        self.predictor = predictor
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000
        self.queue = asyncio.Queue(maxsize=max_queue)
        self.batches = []  # sizes of the batches run (for tests, health)
        self._task = None

    def start(self):
        """Starts the worker on the running event loop."""
        self._task = asyncio.get_running_loop().create_task(self._work())

    async def stop(self):
        """Stops the worker; requests still queued get 503."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        while not self.queue.empty():
            _, future = self.queue.get_nowait()
            if not future.done():
                future.set_exception(Refused(503, "the service is stopping"))

    async def label(self, name, wav):
        """The records of one waveform, once its batch has run.

        Raises
        ------
        Refused
            503 when the queue is full.
        """
        future = asyncio.get_running_loop().create_future()
        try:
            self.queue.put_nowait(((name, wav), future))
        except asyncio.QueueFull:
            raise Refused(
                503,
                f"the service is busy ({self.queue.maxsize} requests "
                "waiting); try again shortly",
            ) from None
        return await future

    async def _work(self):
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            deadline = loop.time() + self.max_wait
            while len(batch) < self.max_batch:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    batch.append(
                        await asyncio.wait_for(self.queue.get(), remaining)
                    )
                except asyncio.TimeoutError:
                    break
            self.batches.append(len(batch))
            # Names are unique per request: the dict keeps one per item.
            waveforms = {
                (index, name): wav
                for index, ((name, wav), _) in enumerate(batch)
            }
            try:
                records, _ = await loop.run_in_executor(
                    None, self.predictor.label_waveforms, waveforms
                )
            except Exception as error:  # a bug: every waiting request hears
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            for index, ((name, _), future) in enumerate(batch):
                if not future.done():  # a client may have gone
                    future.set_result(records[(index, name)])


def create_app(
    predictor,
    max_batch=8,
    max_wait_ms=10,
    max_queue=64,
    max_bytes=25_000_000,
    max_seconds=600.0,
    model_name="",
):
    """The FastAPI application serving ``predictor``.

    Arguments
    ---------
    predictor : EmotionPredictor
        The loaded model (with its enrolment, for a speaker-normalised
        one).
    max_batch, max_wait_ms, max_queue : int, float, int
        Micro-batching (see :class:`MicroBatcher`).
    max_bytes : int
        Largest upload accepted (413 beyond).
    max_seconds : float
        Longest audio accepted (413 beyond).
    model_name : str
        What ``/health`` calls the model.

    Returns
    -------
    fastapi.FastAPI

    Raises
    ------
    UserError
        For a dimensional model: the service answers classes (a joint
        model's too; its dimensions come from ``sercaf predict``).
    """
    if not predictor.labels:
        raise UserError(
            f"{model_name or 'the model'} is dimensional "
            f"({', '.join(predictor.dimensions)}): sercaf serve answers "
            "classes only; get its values with sercaf predict"
        )
    require_serve()
    import contextlib

    from fastapi import FastAPI, Request
    from fastapi.responses import HTMLResponse, JSONResponse

    batcher = MicroBatcher(predictor, max_batch, max_wait_ms, max_queue)

    @contextlib.asynccontextmanager
    async def lifespan(_):
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="sercaf-toolkit emotion service", lifespan=lifespan)
    app.state.batcher = batcher
    started = time.time()

    @app.get("/", response_class=HTMLResponse)
    async def index():
        return page()

    @app.get("/health")
    async def health():
        return {
            "status": "ok",
            "model": model_name,
            "queued": batcher.queue.qsize(),
            "max_queue": batcher.queue.maxsize,
            "max_batch": batcher.max_batch,
            "batches": len(batcher.batches),
            "uptime_seconds": round(time.time() - started, 1),
        }

    @app.get("/labels")
    async def labels():
        return {"labels": list(predictor.labels)}

    @app.post("/predict")
    async def predict(request: Request):
        try:
            name, data = await _upload(request, max_bytes)
            wav = await asyncio.get_running_loop().run_in_executor(
                None, _read, name, data, max_seconds, predictor
            )
            records = await batcher.label(name, wav)
        except Refused as refused:
            return JSONResponse(
                {"error": refused.message}, status_code=refused.status
            )
        result = answer(records, predictor.labels)
        if records[0]["error"]:  # the model could not take it (too short)
            return JSONResponse(
                {"error": records[0]["error"], "flag": records[0]["flag"]},
                status_code=400,
            )
        return {"file": name, **result}

    return app


async def _upload(request, max_bytes):
    """(file name, bytes) of an upload: the body, or a form's one file."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > max_bytes:
        raise Refused(413, _too_large(int(length), max_bytes))
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise Refused(413, _too_large(len(body), max_bytes, "over"))
    kind = request.headers.get("content-type", "")
    name = request.headers.get("x-filename") or "upload"
    if kind.startswith("multipart/form-data"):
        from starlette.datastructures import UploadFile
        from starlette.formparsers import MultiPartException, MultiPartParser

        async def stream():
            yield bytes(body)
            yield b""

        try:
            form = await MultiPartParser(
                request.headers, stream(), max_files=1, max_fields=10
            ).parse()
        except MultiPartException as error:
            raise Refused(400, f"bad form: {error.message}") from None
        files = [v for v in form.values() if isinstance(v, UploadFile)]
        if not files:
            raise Refused(
                400, "the form holds no file; send the audio as its file"
            )
        name = files[0].filename or name
        body = await files[0].read()
    if not body:
        raise Refused(400, f"{name}: empty upload (no bytes); send audio")
    return os.path.basename(name), bytes(body)


def _too_large(size, limit, qualifier=""):
    return (
        f"upload too large: {qualifier + ' ' if qualifier else ''}"
        f"{size / 1e6:.1f} MB, the limit is {limit / 1e6:.1f} MB"
    )


def _read(name, data, max_seconds, predictor):
    """The model's input for an upload, with read_checked's checks."""
    suffix = os.path.splitext(name)[1] or ".audio"
    with tempfile.TemporaryDirectory(prefix="sercaf_upload_") as folder:
        path = os.path.join(folder, "upload" + suffix)
        with open(path, "wb") as out:
            out.write(data)
        try:
            info = soundfile.info(path)
        except Exception as error:  # soundfile raises several types
            reason = " ".join(str(error).replace(path, name).split())
            raise Refused(400, f"{name}: not audio ({reason})") from None
        if info.samplerate and info.frames / info.samplerate > max_seconds:
            raise Refused(
                413,
                f"{name}: {info.frames / info.samplerate:.1f} s of audio, "
                f"the limit is {max_seconds:g} s",
            )
        try:
            wav = read_checked(path)
        except AudioError as error:
            message = str(error).replace(path, name)
            raise Refused(400, message) from None
    return predictor.normalize(wav)
