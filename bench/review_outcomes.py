"""Feed a benchmark run's `review` verdicts through the review loop: each becomes the decision a person who
knows the ground truth would make (duplicate when the candidate is the query's own base, else distinct), stored
as review decisions in a database of its own; then `python -m app calibrate --from-reviews` fits the grey band
from them and writes thresholds.json there. Run the benchmark again with it (`bench.run --thresholds`) to see
the review rate and the precision move.

python -m bench.review_outcomes --run bench/out/before --data bench/out/reviews
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import subprocess
import sys
from pathlib import Path

from app.composition import open_database
from app.config.settings import DbSettings, Settings
from app.domain.review import Choice


async def store(rows: list[dict[str, str]], settings: Settings) -> tuple[int, int]:
    duplicates = 0
    async with open_database(settings) as database, database.units() as uow:
        for n, row in enumerate(rows, start=1):
            copy = row["expected_duplicate"] == "1" and row["matched_base"] == row["base_id"]
            duplicates += copy
            choice = Choice.DUPLICATE if copy else Choice.DISTINCT
            guess = Choice.DISTINCT  # not used by the fit
            await uow.reviews.add(n, choice, None, "bench", guess, float(row["similarity"]), {"version": 0})
        await uow.commit()
    return len(rows), duplicates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, default=Path("bench/out/before"), help="a bench.run --out folder")
    parser.add_argument("--data", type=Path, default=Path("bench/out/reviews"), help="where decisions go")
    parser.add_argument("--min-decisions", type=int, default=20)
    args = parser.parse_args()
    with open(args.run / "queries.csv", newline="") as handle:
        reviews = [r for r in csv.DictReader(handle) if r["verdict"] == "review" and r["similarity"] != "None"]
    args.data.mkdir(parents=True, exist_ok=True)
    (args.data / "imgdedup.db").unlink(missing_ok=True)
    (args.data / "thresholds.json").unlink(missing_ok=True)
    settings = Settings(_env_file=None, data_dir=args.data, db=DbSettings())  # type: ignore[call-arg]
    count, duplicates = asyncio.run(store(reviews, settings))
    print(f"{count} review verdicts of the run stored as decisions ({duplicates} duplicates)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("APP_")} | {"APP_DATA_DIR": str(args.data)}
    command = [sys.executable, "-m", "app", "calibrate", "--from-reviews", "--min-decisions", str(args.min_decisions)]
    sys.exit(subprocess.run(command, env=env, check=False).returncode)


if __name__ == "__main__":
    main()
