"""`python -m tests.emulator [--host 127.0.0.1] [--port 9100]`"""

from __future__ import annotations

import argparse

import uvicorn

from .app import build_app
from .server import uvicorn_config


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    args = parser.parse_args()
    server = uvicorn.Server(uvicorn_config(build_app(), host=args.host, port=args.port))
    print(f"emulator listening on http://{args.host}:{args.port}", flush=True)
    server.run()


if __name__ == "__main__":
    main()
