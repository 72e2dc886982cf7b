"""Kernel probe, run inside the jupyter container (`kernel-start` of `make bench`).

For each repetition: ``POST /api/kernels`` (a new Python kernel), open the kernel's websocket,
send ``1+1`` and wait for the ``execute_result`` ``2``; then delete the kernel. Prints one JSON
object on stdout: ``{"kernel_answer_s": [...], "post_s": [...]}``, seconds from just before the
POST to the answer, and to the POST's response. Uses only what the jupyter image has (tornado
comes with jupyter_server), and the token from JUPYTER_TOKEN, as the server itself does.

Usage: python bench/probe_kernel.py [--reps 5] [--url http://127.0.0.1:8888]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import uuid

from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.websocket import websocket_connect

# A kernel that has not answered in this time is reported as an error, not waited for forever
ANSWER_TIMEOUT_S = 120


def execute_request(code: str, session: str) -> dict:
    """A Jupyter messaging protocol (v5.3) ``execute_request`` for the shell channel."""
    return {
        "header": {
            "msg_id": uuid.uuid4().hex,
            "msg_type": "execute_request",
            "username": "bench",
            "session": session,
            "version": "5.3",
        },
        "parent_header": {},
        "metadata": {},
        "content": {
            "code": code,
            "silent": False,
            "store_history": False,
            "user_expressions": {},
            "allow_stdin": False,
        },
        "channel": "shell",
        "buffers": [],
    }


async def one_kernel(base: str, token: str) -> tuple[float, float]:
    """Start a kernel, have it compute 1+1, delete it.

    Returns:
        Seconds from before the POST to the answer ``2``, and to the POST's response.

    Raises:
        RuntimeError: the kernel answered something else; asyncio.TimeoutError: no answer in
        ``ANSWER_TIMEOUT_S``.
    """
    http = AsyncHTTPClient()
    headers = {"Authorization": f"token {token}"}
    start = time.perf_counter()
    response = await http.fetch(
        HTTPRequest(f"{base}/api/kernels", method="POST", body="{}", headers=headers)
    )
    posted = time.perf_counter() - start
    kernel_id = json.loads(response.body)["id"]
    try:
        ws_url = base.replace("http", "ws", 1) + f"/api/kernels/{kernel_id}/channels"
        connection = await websocket_connect(HTTPRequest(ws_url, headers=headers))
        request = execute_request("1+1", session=uuid.uuid4().hex)
        await connection.write_message(json.dumps(request))
        while True:
            raw = await asyncio.wait_for(connection.read_message(), ANSWER_TIMEOUT_S)
            if raw is None:
                raise RuntimeError("the kernel's websocket closed before it answered")
            message = json.loads(raw)
            if (
                message.get("msg_type") == "execute_result"
                and message["parent_header"].get("msg_id") == request["header"]["msg_id"]
            ):
                answered = time.perf_counter() - start
                result = message["content"]["data"].get("text/plain")
                if result != "2":
                    raise RuntimeError(f"the kernel answered {result!r} to 1+1")
                break
        connection.close()
    finally:
        await http.fetch(
            HTTPRequest(f"{base}/api/kernels/{kernel_id}", method="DELETE", headers=headers)
        )
    return answered, posted


async def run(base: str, token: str, reps: int) -> dict[str, list[float]]:
    """``reps`` kernels one after the other; the lists of their timings in seconds."""
    answers, posts = [], []
    for _ in range(reps):
        answered, posted = await one_kernel(base, token)
        answers.append(answered)
        posts.append(posted)
    return {"kernel_answer_s": answers, "post_s": posts}


def main() -> None:
    """Parse the options, run the probe, print the JSON result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5, help="kernels to start, one at a time")
    parser.add_argument("--url", default="http://127.0.0.1:8888", help="the Jupyter server")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.url, os.environ["JUPYTER_TOKEN"], args.reps))))


if __name__ == "__main__":
    main()
