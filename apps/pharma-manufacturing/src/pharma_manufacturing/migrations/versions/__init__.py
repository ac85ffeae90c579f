"""One module per revision. A release only adds (expand); removing comes a release later."""
