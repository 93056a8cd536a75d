"""Test-wide settings: no model hub, few threads, quiet HF progress bars."""

import os

# Set before transformers / huggingface_hub are imported anywhere: tests
# must never reach for the hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
