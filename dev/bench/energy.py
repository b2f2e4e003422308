#!/usr/bin/env python3
"""energy.py - the GPU energy a command uses: NVML's total-energy counter
(mJ since the driver loaded) read before and after the command, the wall time
between, and the mean power. Run a command twice with more and less work
(e.g. leank-bench attention --sustain 300 and --sustain 0, or leank-bench
train -n 6 and -n 1) and take the difference: the joules of the extra work,
without the process's start and its idle moments.

  python3 dev/bench/energy.py [--gpu N] [--label NAME] -- COMMAND [ARG]...

Prints the command's output as it comes, then one JSON line on stdout:
{"label", "wall_s", "joules", "watts_mean", "rc"}; exits with the command's
status.
"""
import argparse
import json
import subprocess
import sys
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gpu", type=int, default=0, help="NVML device index (default 0)")
    ap.add_argument("--label", default="")
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.cmd[1:] if a.cmd and a.cmd[0] == "--" else a.cmd
    if not cmd:
        ap.error("no command")
    import pynvml
    pynvml.nvmlInit()
    h = pynvml.nvmlDeviceGetHandleByIndex(a.gpu)
    e0 = pynvml.nvmlDeviceGetTotalEnergyConsumption(h)
    t0 = time.perf_counter()
    rc = subprocess.call(cmd)
    t1 = time.perf_counter()
    e1 = pynvml.nvmlDeviceGetTotalEnergyConsumption(h)
    j = (e1 - e0) / 1000.0
    sys.stdout.flush()
    print(json.dumps({"label": a.label or " ".join(cmd)[:80], "wall_s": t1 - t0, "joules": j,
                      "watts_mean": j / (t1 - t0), "rc": rc}), flush=True)
    sys.exit(rc)


if __name__ == "__main__":
    main()
