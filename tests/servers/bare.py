"""An MCP server on the standard library alone: it starts in tens of milliseconds.

    python -I -S tests/servers/bare.py [--spawn-child] [--stubborn-child]

For the tests that start a server a hundred times, where importing the SDK (about a second each
time) would be most of the suite's time. It speaks the real protocol (2025-11-25, JSON-RPC over
newline-delimited stdio): initialize, ping, tools/list and tools/call of one tool, `whoami`,
which answers with its pid (and, in the result's `_meta`, the `_meta` its request carried).
`--spawn-child` starts a `sleep` in its process group first, as servers that launch helpers do;
`--stubborn-child` starts one that ignores SIGTERM.
"""

import json
import os
import subprocess
import sys

PROTOCOL = "2025-11-25"
WHOAMI = {
    "name": "whoami",
    "description": "Answer with this server's pid.",
    "inputSchema": {"type": "object", "properties": {}},
}


def answer(request_id: object, result: object) -> None:
    sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": request_id, "result": result}) + "\n")
    sys.stdout.flush()


def fail(request_id: object, code: int, message: str) -> None:
    error = {"code": code, "message": message}
    sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": request_id, "error": error}) + "\n")
    sys.stdout.flush()


def main() -> None:
    if "--spawn-child" in sys.argv:
        subprocess.Popen(["sleep", "600"], stdin=subprocess.DEVNULL)
    if "--stubborn-child" in sys.argv:
        stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        stubborn += "time.sleep(600)"
        subprocess.Popen([sys.executable, "-I", "-S", "-c", stubborn], stdin=subprocess.DEVNULL)
    for line in sys.stdin:
        message = json.loads(line)
        method, request_id = message.get("method"), message.get("id")
        if request_id is None:
            continue  # a notification
        if method == "initialize":
            answer(
                request_id,
                {
                    "protocolVersion": PROTOCOL,
                    "capabilities": {"tools": {}},
                    "serverInfo": {"name": "bare", "version": "1.0.0"},
                },
            )
        elif method == "ping":
            answer(request_id, {})
        elif method == "tools/list":
            answer(request_id, {"tools": [WHOAMI]})
        elif method == "tools/call":
            text = str(os.getpid())
            received = (message.get("params") or {}).get("_meta")
            content = [{"type": "text", "text": text}]
            answer(request_id, {"content": content, "isError": False, "_meta": {"got": received}})
        else:
            fail(request_id, -32601, f"method not found: {method}")


if __name__ == "__main__":
    main()
