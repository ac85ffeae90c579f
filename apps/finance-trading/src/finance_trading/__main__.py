"""Command line entry point: `python -m finance_trading --host 127.0.0.1 --port 8000`."""

from ops_kit.serve import parse_args

from finance_trading.main import run

if __name__ == "__main__":
    args = parse_args("finance_trading", __doc__)
    run(host=args.host, port=args.port)
