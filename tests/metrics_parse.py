"""Parses a Prometheus scrape (stdin) with the Prometheus project's own
Python parsers and prints it in a flat form for tests/ops.rs.

The exposition must parse with the strict OpenMetrics parser (which checks,
among other things, that histogram buckets are cumulative, that a +Inf
bucket exists and that _count equals it) and with the classic Prometheus
text parser. Output, one line each, tab-separated:

    F <family> <type>
    S <family> <sample name> <labels as k=v,k=v sorted> <value>

Exits 1 with the parser's message on stderr if either parser rejects it.
"""

import sys

from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families as text_families


def main():
    text = sys.stdin.read()
    try:
        families = list(openmetrics_families(text))
        list(text_families(text))
    except Exception as e:  # the parsers raise ValueError and friends
        print(f"unparseable exposition: {e!r}", file=sys.stderr)
        sys.exit(1)
    for f in families:
        print(f"F\t{f.name}\t{f.type}")
        for s in f.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            print(f"S\t{f.name}\t{s.name}\t{labels}\t{s.value!r}")


if __name__ == "__main__":
    main()
