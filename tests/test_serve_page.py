"""The web page of sercaf serve in a real headless Chromium (Selenium):
an upload shows the label, the probabilities and the timeline.

Skipped, saying why, where Chromium and its driver are not installed
(Debian: apt-get install chromium chromium-driver). With SERCAF_SCREENSHOT
set to a path, the page after the upload is saved there (how
docs/images/serve.png was made).
"""

import os
import shutil

import numpy as np
import pytest
import soundfile

from sercaf_toolkit.corpora.demo import synthesize_utterance
from sercaf_toolkit.deployment.inference import EmotionPredictor
from sercaf_toolkit.deployment.service import create_app
from tests.serving import running

webdriver = pytest.importorskip("selenium.webdriver")
BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (BROWSER and DRIVER),
    reason="no Chromium with chromedriver installed (apt-get install "
    "chromium chromium-driver)",
)


@pytest.fixture(scope="module")
def browser():
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = BROWSER
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu",
                     "--window-size=1000,760"):  # fmt: skip
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


def test_an_upload_shows_label_probabilities_and_timeline(
    browser, demo_model_dir, tmp_path
):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    rate = 16000
    parts = [np.zeros(3 * rate, np.float32)]
    for index, emotion in enumerate(("angry", "sad", "happy", "neutral")):
        parts += [
            synthesize_utterance("spk2_m", emotion, 70 + index),
            np.zeros(4 * rate, np.float32),
        ]
    path = tmp_path / "interview.wav"
    soundfile.write(path, np.concatenate(parts), rate)
    predictor = EmotionPredictor(demo_model_dir, long_threshold=10)
    with running(create_app(predictor)) as url:
        browser.get(url + "/")
        WebDriverWait(browser, 20).until(
            lambda b: b.find_element(By.ID, "labels").text != "…"
        )
        browser.find_element(By.ID, "file").send_keys(str(path))
        WebDriverWait(browser, 60).until(
            lambda b: b.find_element(By.ID, "label").text
        )
        label = browser.find_element(By.ID, "label").text
        bars = browser.find_elements(By.CSS_SELECTOR, "#bars .bar")
        segments = browser.find_elements(By.CSS_SELECTOR, "#timeline div")
        status = browser.find_element(By.ID, "status").text
        if os.environ.get("SERCAF_SCREENSHOT"):
            browser.save_screenshot(os.environ["SERCAF_SCREENSHOT"])
    assert label in predictor.labels
    assert len(bars) == len(predictor.labels)
    texts = [segment.text for segment in segments]
    assert "non-speech" in texts and len(texts) >= 5
    assert status.startswith("interview.wav")
