"""Write the README's claims table (lpc.reporting.claims) and results table (lpc.reporting.results_table)
from the committed reports' JSON.

    python scripts/results_table.py            # rewrite both tables in README.md
    python scripts/results_table.py --check    # exit 1 if README.md's tables are not the reports' (the tests run this)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lpc.reporting import claims
from lpc.reporting.results_table import results_table, with_table

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only check that README.md holds the reports' table")
    args = parser.parse_args()
    readme = ROOT / "README.md"
    text = readme.read_text()
    drawn = with_table(with_table(text, results_table(ROOT / "results")), claims.claims_table(ROOT / "results"), claims.MARKERS)
    if args.check:
        sys.exit(0 if drawn == text else "README.md's claims or results table differs from results/*/report.json: "
                                         "run python scripts/results_table.py")
    readme.write_text(drawn)
    print(f"README.md's claims and results tables drawn from {ROOT / 'results'}")


if __name__ == "__main__":
    main()
