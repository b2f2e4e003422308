#!/usr/bin/env python3
# Memory of one run of a command, split by kind (docs/perf.md, "Peak RSS on an F32 checkpoint"):
# samples /proc/PID/status every 2 ms and prints the peaks of VmRSS, RssAnon (private memory: malloc'd
# weights) and RssFile (mapped file pages, shared with the page cache), the kernel's own peak (VmHWM, as
# /usr/bin/time's %M), the wall time and the command's last line of stderr.
#   rss.py CMD [ARG]...
import re, subprocess, sys, threading, time

p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
err = []
threading.Thread(target=lambda: err.append(p.stderr.read().decode(errors="replace")), daemon=True).start()
t0 = time.monotonic()
peak = {"VmRSS": 0, "RssAnon": 0, "RssFile": 0, "VmHWM": 0}
while p.poll() is None:
    try:
        s = open(f"/proc/{p.pid}/status").read()
        for k in peak:
            m = re.search(rf"^{k}:\s+(\d+)", s, re.M)
            if m: peak[k] = max(peak[k], int(m.group(1)))
    except OSError:
        pass
    time.sleep(0.002)
wall = time.monotonic() - t0
time.sleep(0.05)
last = (err[0].strip().splitlines() or [""])[-1] if err else ""
print(f"peak VmRSS {peak['VmRSS']} KB, RssAnon {peak['RssAnon']} KB, RssFile {peak['RssFile']} KB, "
      f"VmHWM {peak['VmHWM']} KB; wall {wall:.2f} s; exit {p.returncode}; {last}")
sys.exit(p.returncode)
