"""Serving the simulator: in a thread, inside a running event loop, and as a blocking process."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import urllib.request

import openai
import pytest

from tollgate.simulator import Simulator, SimulatorServer, bind_socket, start_in_loop, start_on_socket

HELLO = [{"role": "user", "content": "hello there"}]


def refuses_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True


def test_thread_server_answers_at_once_and_frees_its_port_on_exit() -> None:
    with SimulatorServer(Simulator(reply_words=2)) as server:
        assert server.base_url == f"http://127.0.0.1:{server.port}"
        with urllib.request.urlopen(server.base_url + "/v1/models", timeout=5) as response:
            assert response.status == 200
            assert json.loads(response.read())["object"] == "list"
    assert refuses_connections(server.port)


def test_two_thread_servers_get_different_ports() -> None:
    with SimulatorServer() as one, SimulatorServer() as two:
        assert one.port != two.port


def test_start_in_loop_serves_inside_the_running_loop() -> None:
    async def scenario() -> tuple[str | None, int]:
        running, port = await start_in_loop(Simulator(reply_words=3))
        try:
            async with openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="k", max_retries=0) as c:
                completion = await c.chat.completions.create(model="m", messages=HELLO)
        finally:
            await running.stop()
        return completion.choices[0].message.content, port

    text, port = asyncio.run(scenario())
    assert text == "alpha bravo charlie"
    assert refuses_connections(port)


def test_start_on_socket_uses_the_bound_socket_and_closes_it_on_stop() -> None:
    sock = bind_socket()
    port = sock.getsockname()[1]
    simulator = Simulator()

    async def scenario() -> int:
        stop = await start_on_socket(simulator, sock)
        try:
            async with openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="k", max_retries=0) as c:
                stream = await c.chat.completions.create(model="m", messages=HELLO, max_tokens=2, stream=True)
                chunks = [chunk async for chunk in stream]
        finally:
            await stop()
        return len(chunks)

    assert asyncio.run(scenario()) == 4  # role, two words, finish
    assert sock.fileno() == -1
    assert [r["path"] for r in simulator.received] == ["/v1/chat/completions"]
    assert refuses_connections(port)


@pytest.mark.slow
def test_run_simulator_blocks_until_interrupted() -> None:
    code = "from tollgate.simulator import run_simulator; run_simulator(port=0, require_key='sk-cli', reply_words=1)"
    process = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True)
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        assert line.startswith("tollgate simulator listening on http://127.0.0.1:")
        base_url = line.rsplit(" ", 1)[1].strip()
        with openai.OpenAI(base_url=base_url + "/v1", api_key="sk-cli", max_retries=0) as client:
            completion = client.chat.completions.create(model="m", messages=HELLO)
        assert completion.choices[0].message.content == "alpha"
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()
