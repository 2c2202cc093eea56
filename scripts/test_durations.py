"""Write ``tests/durations.json``: each test file's seconds in a JUnit XML of the main suite.

``tests/conftest.py`` hands the files to the two ``pytest -n 2 --dist loadfile``
workers longest first (the longest-processing-time rule), so no long file starts
last while the other worker has nothing left; by default pytest-xdist orders
them by their number of tests, which put the crash-and-resume files, few tests
of 20-60 s each, at the end. Regenerate after adding slow tests (the CI run
writes the XML)::

    python scripts/test_durations.py .ci-backend-lane/tensorflow.xml
"""

from __future__ import annotations

import argparse
import json
import xml.etree.ElementTree as ElementTree
from collections import defaultdict
from pathlib import Path

from make_backend_table import test_file  # this folder is on sys.path when run

OUTPUT = Path(__file__).resolve().parents[1] / "tests" / "durations.json"


def file_seconds(junit_xml: str) -> dict[str, float]:
    """``{"tests/x/test_y.py": seconds}`` summed over the file's test cases."""
    seconds: dict[str, float] = defaultdict(float)
    for case in ElementTree.parse(junit_xml).iter("testcase"):
        seconds[test_file(case)] += float(case.get("time") or 0.0)
    return {path: round(value, 1) for path, value in sorted(seconds.items())}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("junit_xml", help="JUnit XML of a run of the main suite")
    args = parser.parse_args(argv)
    seconds = file_seconds(args.junit_xml)
    OUTPUT.write_text(json.dumps(seconds, indent=0, sort_keys=True) + "\n")
    print(f"{OUTPUT}: {len(seconds)} files, {sum(seconds.values()):.0f} s in all")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
