"""A ``sercaf serve`` application run by uvicorn in a thread on a free
localhost port, for the tests and the benchmark."""

import contextlib
import socket
import threading
import time


def free_port():
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def running(app, timeout=30.0):
    """Serves ``app`` on 127.0.0.1; yields its base URL; stops it."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    began = time.time()
    while not server.started:
        if not thread.is_alive() or time.time() - began > timeout:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)
