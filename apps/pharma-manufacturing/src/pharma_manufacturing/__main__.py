"""Command line entry point: `python -m pharma_manufacturing --host 127.0.0.1 --port 8000`."""

import argparse

from pharma_manufacturing.main import run


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m pharma_manufacturing", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port to bind (default 8000)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    args = parse_args()
    run(host=args.host, port=args.port)
