"""Command line entry point: `python -m pharma_manufacturing --host 127.0.0.1 --port 8000`."""

from ops_kit.serve import parse_args

from pharma_manufacturing.main import run

if __name__ == "__main__":
    args = parse_args("pharma_manufacturing", __doc__)
    run(host=args.host, port=args.port)
