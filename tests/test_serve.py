"""sercaf serve through real HTTP on localhost: answers, refusals, limits,
a bounded queue and a concurrent burst labelled as sercaf predict labels."""

import asyncio
import csv
import io
import pathlib
import time

import numpy as np
import pytest
import soundfile

from sercaf_toolkit import cli
from sercaf_toolkit.corpora.demo import synthesize_utterance
from sercaf_toolkit.deployment.inference import EmotionPredictor
from sercaf_toolkit.deployment.service import create_app
from tests.serving import running
from tests.test_cli import assert_user_error, sercaf

httpx = pytest.importorskip("httpx")
RATE = 16000
EMOTIONS = ("neutral", "happy", "angry", "sad")


def wav_bytes(samples, rate=RATE, fmt="WAV"):
    out = io.BytesIO()
    soundfile.write(out, samples, rate, format=fmt)
    return out.getvalue()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Good demo utterances (one 8 kHz FLAC, one stereo) and a long
    recording with pauses, written to a folder."""
    folder = tmp_path_factory.mktemp("serve_audio")
    paths = []
    for index in range(12):
        wav = synthesize_utterance(
            f"spk{index % 8 + 1}_{'fm'[index % 2]}", EMOTIONS[index % 4], index
        )
        path = folder / f"utt{index:02d}.wav"
        soundfile.write(path, wav, RATE)
        paths.append(path)
    long = np.concatenate(
        [np.zeros(5 * RATE, np.float32)]
        + [
            np.concatenate(
                [synthesize_utterance("spk3_f", "angry", 50 + i),
                 np.zeros(6 * RATE, np.float32)]
            )
            for i in range(4)
        ]
    )  # fmt: skip
    soundfile.write(folder / "long.wav", long, RATE)
    paths.append(folder / "long.wav")
    return paths


@pytest.fixture(scope="module")
def predictor(demo_model_dir):
    return EmotionPredictor(demo_model_dir, batch_size=8)


@pytest.fixture(scope="module")
def service(predictor):
    app = create_app(
        predictor,
        max_batch=8,
        max_wait_ms=20,
        max_queue=64,
        max_bytes=2_000_000,
        max_seconds=60,
        model_name="demo",
    )
    with running(app) as url:
        yield url, app


def post_all(url, bodies, timeout=120.0):
    """POSTs every (name, bytes) at once; returns the responses in order."""

    async def burst():
        limits = httpx.Limits(max_connections=len(bodies))
        async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
            return await asyncio.gather(
                *(
                    client.post(
                        f"{url}/predict",
                        content=body,
                        headers={"X-Filename": name},
                    )
                    for name, body in bodies
                )
            )

    return asyncio.run(burst())


def test_health_labels_and_page(service, predictor):
    url, _ = service
    health = httpx.get(f"{url}/health").json()
    assert health["status"] == "ok" and health["max_batch"] == 8
    assert httpx.get(f"{url}/labels").json() == {"labels": predictor.labels}
    page = httpx.get(f"{url}/")
    assert page.status_code == 200 and "<script>" in page.text
    # Offline: no script, style or image from elsewhere.
    assert "src=" not in page.text and "href=" not in page.text


def test_a_file_as_body_or_form_gets_its_label(service, files, predictor):
    url, _ = service
    body = files[0].read_bytes()
    plain = httpx.post(f"{url}/predict", content=body).json()
    form = httpx.post(
        f"{url}/predict", files={"audio": ("a.wav", body, "audio/wav")}
    ).json()
    records, _ = predictor.predict([str(files[0])])
    assert plain["label"] == form["label"] == records[0]["label"]
    assert form["file"] == "a.wav"
    assert sum(plain["probabilities"].values()) == pytest.approx(1, abs=1e-5)
    assert "segments" not in plain


@pytest.mark.parametrize(
    "name, body, status, words",
    [
        ("notes.wav", b"not audio\n" * 20, 400, ["notes.wav", "not audio"]),
        ("empty.wav", b"", 400, ["empty upload"]),
        ("nosamples.wav", wav_bytes(np.zeros(0)), 400, ["empty audio"]),
        ("nan.wav", None, 400, ["NaN"]),
        ("cut.wav", "truncated", 400, ["cut.wav", "truncated"]),
        ("big.wav", b"\0" * 2_100_000, 413, ["too large", "2.0 MB"]),
        ("long.wav", wav_bytes(np.zeros(61 * 8000), 8000), 413, ["61.0 s"]),
        ("tiny.wav", wav_bytes(np.full(100, 0.1)), 400, ["too short"]),
    ],
)  # fmt: skip
def test_bad_uploads_are_refused_with_their_reason(
    service, files, name, body, status, words
):
    url, _ = service
    if name == "nan.wav":
        out = io.BytesIO()
        soundfile.write(
            out, np.array([0.1, np.nan] * 800), RATE, subtype="FLOAT",
            format="WAV",
        )  # fmt: skip
        body = out.getvalue()
    elif body == "truncated":
        body = files[0].read_bytes()[:3000]
    response = httpx.post(
        f"{url}/predict", content=body, headers={"X-Filename": name}
    )
    assert response.status_code == status, response.text
    for word in words:
        assert word in response.json()["error"]


def test_a_burst_of_64_is_answered_as_sercaf_predict_labels(
    service, files, demo_model_dir, tmp_path
):
    url, app = service
    good = [(p.name, p.read_bytes()) for p in files]
    bad = [
        ("broken.wav", b"RIFF\x10\x00\x00\x00WAVEfmt junk"),
        ("text.wav", b"hello\n" * 100),
        ("cut.wav", files[1].read_bytes()[:2000]),
    ]
    bodies = [(good + bad)[i % (len(good) + len(bad))] for i in range(64)]
    before = len(app.state.batcher.batches)
    responses = post_all(url, bodies)
    assert len(responses) == 64
    out = tmp_path / "predict.csv"
    cli.main(
        ["predict", demo_model_dir, *map(str, files), "--out", str(out),
         "--no_progress"]
    )  # fmt: skip
    expected = {}
    for row in csv.DictReader(out.open()):
        expected.setdefault(pathlib.Path(row["path"]).name, []).append(row)
    for (name, _), response in zip(bodies, responses):
        if name in expected:
            assert response.status_code == 200, response.text
            data = response.json()
            rows = expected[name]
            if len(rows) == 1:
                assert data["label"] == rows[0]["label"]
                for label, p in data["probabilities"].items():
                    assert p == pytest.approx(
                        float(rows[0][f"prob_{label}"]), abs=1e-4
                    )
            else:  # a long recording: its segments, as the CSV rows
                segments = data["segments"]
                assert [
                    (s["start"], s["end"], s["speech"]) for s in segments
                ] == [
                    (float(r["start"]), float(r["end"]), r["speech"])
                    for r in rows
                ]
                assert [s["label"] or "" for s in segments] == [
                    r["label"] for r in rows
                ]
        else:
            assert response.status_code == 400, response.text
            assert name in response.json()["error"]
    sizes = app.state.batcher.batches[before:]
    assert max(sizes) > 1  # batched
    assert sum(sizes) == sum(1 for name, _ in bodies if name in expected)


class SlowPredictor:
    """A predictor whose batches take a while: the queue fills up."""

    def __init__(self, predictor, seconds):
        self.inner, self.seconds = predictor, seconds
        self.labels = predictor.labels

    def normalize(self, wav, speaker=None):
        return wav

    def label_waveforms(self, waveforms, progress=False):
        time.sleep(self.seconds)
        return self.inner.label_waveforms(waveforms)


def test_a_full_queue_answers_503_at_once_and_the_rest_are_labelled(
    predictor, files
):
    app = create_app(
        SlowPredictor(predictor, 0.5), max_batch=1, max_wait_ms=0, max_queue=2
    )
    body = files[0].read_bytes()
    with running(app) as url:
        began = time.time()
        responses = post_all(url, [("a.wav", body)] * 10, timeout=30)
        elapsed = time.time() - began
    codes = sorted(r.status_code for r in responses)
    assert set(codes) == {200, 503}, codes
    assert codes.count(200) >= 3  # one running, two queued
    assert all(
        "busy" in r.json()["error"] for r in responses if r.status_code == 503
    )
    assert elapsed < 20


def test_serve_mistakes_are_one_line(tmp_path, demo_model_dir):
    assert_user_error(sercaf("serve", tmp_path / "nothing"), "does not exist")
    assert_user_error(
        sercaf("serve", demo_model_dir, "--max_batch", "0"), "--max_batch"
    )
