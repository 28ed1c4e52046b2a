"""`python -m lib evaluate RUN_ID [--runs-dir DIR] [--json] [--predictions-csv FILE]`: a run's metrics on
its validation split, from its last checkpoint; predictions are stored with the run and reused.

Exit 2 with one line for an unknown run, a run without a checkpoint, or validation images that are gone.
Images that no longer decode are named on stderr and left out.
"""

from __future__ import annotations

import json
import sys

from lib.charts.numbers import percent


def run(args) -> int:
    # Imported here: torchmetrics (and the matplotlib it loads) would slow every other command's start.
    from lib.evaluation.metrics import compute_metrics, predictions_frame
    from lib.evaluation.predictions import run_predictions

    preds = run_predictions(args.run_id, runs_dir=args.runs_dir)
    for path, reason in preds.bad:
        print(f"left out {path}: {reason}", file=sys.stderr)
    metrics = compute_metrics(preds)
    if args.predictions_csv:
        predictions_frame(preds).to_csv(args.predictions_csv, index=False)
    if args.json:
        print(json.dumps({"run_id": args.run_id, **metrics.summary()}))
        return 0
    top5 = percent(metrics.top5_accuracy)
    print(
        f"{args.run_id}: {metrics.num_images} images, accuracy {percent(metrics.accuracy)}, top-5 {top5}, "
        f"balanced {percent(metrics.balanced_accuracy)}, macro F1 {metrics.macro_f1:.3f}, NLL {metrics.nll:.4f}, "
        f"ECE {metrics.ece:.4f}"
    )
    print(metrics.per_class.drop(columns="average_precision").to_string(index=False, float_format="%.3f"))
    return 0
