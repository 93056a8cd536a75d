#!/usr/bin/env python3
"""Times one inference runtime in a process of its own (benchmark figure 6).

    python benchmarks/runtime_worker.py onnx MODEL.onnx BATCHES.npz THREADS
    python benchmarks/runtime_worker.py torch SIZE:STATE.pt BATCHES.npz THREADS

Runs every batch of ``BATCHES.npz`` (``wavs_<i>``, ``lens_<i>``) through
the model once to warm up, then once timed, and prints one JSON line:
``seconds`` (the timed pass) and ``peak_rss_mib`` (the process's peak
resident memory: runtime, model and activations, as a server would hold
them). The PyTorch model is benchmark.py's CAF model of that size, with
the weights of ``STATE.pt``. A process of its own per runtime, so that
one runtime's memory does not count against another; the ONNX one never
imports PyTorch, as on a server without it.

Authors
 * sercaf-toolkit developers 2026
"""

import json
import os
import resource
import sys
import time

import numpy as np


def main(kind, model_path, batches_path, threads):
    data = np.load(batches_path)
    count = len([k for k in data.files if k.startswith("wavs_")])
    batches = [(data[f"wavs_{i}"], data[f"lens_{i}"]) for i in range(count)]
    if kind == "onnx":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(
            model_path, options, providers=["CPUExecutionProvider"]
        )

        def run(wavs, lens):
            session.run(None, {"wavs": wavs, "lens": lens})

    else:
        import torch

        torch.set_num_threads(threads)
        # The model is rebuilt and its weights loaded: wav2vec2's
        # weight-normed convolution cannot be pickled whole.
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import benchmark

        size, state = model_path.split(":", 1)
        model = benchmark.build_models(size)["caf"].model
        model.load_state_dict(torch.load(state))
        model.eval()

        def run(wavs, lens):
            with torch.no_grad():
                model.log_probabilities(
                    torch.from_numpy(wavs), torch.from_numpy(lens)
                )

    for wavs, lens in batches:  # warm-up: allocators, kernels, caches
        run(wavs, lens)
    start = time.perf_counter()
    for wavs, lens in batches:
        run(wavs, lens)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "peak_rss_mib": peak_rss_mib()}))


def peak_rss_mib():
    """This process's peak resident memory, in MiB.

    VmHWM, not ``ru_maxrss``: Linux carries ``ru_maxrss`` over from the
    parent that forked this process, while VmHWM starts afresh with the
    program.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
