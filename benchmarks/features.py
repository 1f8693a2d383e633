"""Feature benchmark (issue #2): python benchmarks/features.py [--quick] [--json out.json] [--sections abcdef].

Pins every thread pool to one thread before numpy/torch load, then runs audioforge.benchmarking.features.
"""

from __future__ import annotations

import argparse
import os

for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[var] = "1"

from audioforge.benchmarking.features import run  # noqa: E402

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="short measurements (smoke test)")
    ap.add_argument("--json", default=None, help="also write the results as JSON")
    ap.add_argument("--sections", default="abcdef", help="which sections: a seed mel, b PaSST mel, c fbank, "
                    "d streaming, e many streams, f exported (ONNX) log-mel")
    args = ap.parse_args()
    run(quick=args.quick, json_path=args.json, sections=args.sections)
