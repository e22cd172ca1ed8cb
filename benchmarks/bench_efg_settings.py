"""Claim (issue #17, item 5): the EFG model's default settings fit real DFT tensors; the old
defaults (lmax 3, 8 channels, 8 product channels, MLPs 32 wide) underfit them.

One run: `pyexport fit-efg` with each setting on the same data, split (seed) and training options
(Adam, early stopping on the validation loss), then the held-out (test) errors of its metrics:
component RMSE per species (V/Å², beside the labels' spread), 79Br C_Q MAE (MHz, %) and η MAE, the
model's size, the epochs run and the best epoch, and the training time (wall, this shared machine).

    python benchmarks/bench_efg_settings.py [DATA ...] [--epochs 300] [-o out.json]

DATA defaults to the shipped PAW-DFT labels of CsPbBr3 (examples/cspbbr3/dft_efg/labels_*.extxyz).
"""
import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: name -> (lmax, channels, product channels, MLP width)
SETTINGS = {
    "old defaults (3/8/8/32)": (3, 8, 8, 32),
    "lmax 4, 16/16/64": (4, 16, 16, 64),
    "lmax 3, 16/16/64": (3, 16, 16, 64),
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data", nargs="*", type=Path)
    p.add_argument("--epochs", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--output", type=Path, help="JSON of the results")
    args = p.parse_args(argv)
    data = args.data or sorted((ROOT / "examples" / "cspbbr3" / "dft_efg").glob("labels_*.extxyz"))
    if not data:
        raise SystemExit("no data (and no shipped labels found)")
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (lmax, channels, product, hidden) in SETTINGS.items():
            metrics = Path(tmp) / "metrics.json"
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "pyexport", "fit-efg", *map(str, data), "--lmax", str(lmax),
                            "--channels", str(channels), "--product-channels", str(product), "--hidden", str(hidden),
                            "--epochs", str(args.epochs), "--seed", str(args.seed), "--no-progress",
                            "-o", str(Path(tmp) / "efg.ckpt"), "--metrics", str(metrics)], check=True, cwd=ROOT)
            rows[name] = {"wall_s": time.perf_counter() - start, **json.loads(metrics.read_text())}
            print(f"  {name}: {rows[name]['wall_s']:.0f} s", flush=True)
    first = rows[next(iter(rows))]
    print(f"\n{first['n_structures']} structures, split {first['split_sizes']}, up to {args.epochs} epochs")
    print("| setting | parameters | epochs (best) | wall s | Br RMSE V/Å² | Cs | Pb | relative RMSE | 79Br C_Q MAE MHz (%) | Br η MAE |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in rows.items():
        test = r["test"]
        sp = test["species"]
        br = sp["Br"]
        print(f"| {name} | {r['n_parameters']} | {r['epochs_run']} ({r['best_epoch']}) | {r['wall_s']:.0f} | "
              f"{br['component_rmse_V_per_A2']:.2f} | {sp['Cs']['component_rmse_V_per_A2']:.2f} | "
              f"{sp['Pb']['component_rmse_V_per_A2']:.2f} | {test['relative_component_rmse']:.3f} | "
              f"{br['cq_mae_MHz']:.2f} ({100 * br['relative_cq_mae']:.1f}) | {br['eta_mae']:.3f} |")
    print(f"label spread (test, V/Å²): Br {first['test']['species']['Br']['label_std_V_per_A2']:.1f}, "
          f"Cs {first['test']['species']['Cs']['label_std_V_per_A2']:.1f}, "
          f"Pb {first['test']['species']['Pb']['label_std_V_per_A2']:.1f}")
    if args.output:
        args.output.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
