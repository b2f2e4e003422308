#!/usr/bin/env python3
"""ws_protocol.py - a random-interleaving model of prefill form 7/8's
synchronisation (kernels/attention.cu, prefill_ws_kernel; NOTES-attention.md,
prefill v5), checked without a GPU.

Agents: the producer thread and the 8 consumer warps (warpgroups 0 and 1),
each a generator that yields the condition it blocks on; a scheduler steps a
random runnable agent or completes a random in-flight asynchronous operation
(a TMA box, a wgmma commit group). Modelled as the PTX ISA states them:
- mbarrier: pending arrivals and a tx-count; a phase completes when both reach
  zero; try_wait.parity(p) succeeds iff the current phase's parity differs
  from p (the phase of parity p has completed).
- TMA box: writes its stage some time after issue, then complete_tx(bytes).
- wgmma commit groups of a warp: complete in order, each reading its stage
  until it completes; wait_group(N) blocks until at most N are pending.
- named barrier: completes when `count` threads (32 a warp) arrived by
  bar.sync or bar.arrive; bar.sync blocks until then.
Checked: no deadlock; every read sees the tile the step expects, during its
whole flight (no TMA write into a stage while a read of it is in flight); every
barrier ends complete (no half-arrived named barrier, no pending mbarrier
arrivals beyond the unused last phase).
Usage: python3 dev/sim/ws_protocol.py [runs]   (exit 0: all runs clean)
"""
import random
import sys

HB = 16384  # bytes of a box (64 channels x 128 rows x 2 B)
TB = 2 * HB  # a tile


class Violation(Exception):
    pass


class MBar:
    def __init__(self, name, count):
        self.name, self.count = name, count
        self.phase, self.pending, self.tx = 0, count, 0

    def _check(self):
        if self.pending < 0:
            raise Violation(f"{self.name}: more arrivals than {self.count} in phase {self.phase}")
        if self.pending == 0 and self.tx == 0:
            self.phase += 1
            self.pending = self.count

    def arrive(self):
        self.pending -= 1
        self._check()

    def expect_tx(self, b):
        self.tx += b
        self.pending -= 1
        self._check()

    def complete_tx(self, b):
        self.tx -= b
        if self.tx < 0:
            raise Violation(f"{self.name}: tx below 0")
        self._check()

    def passed(self, parity):
        return (self.phase & 1) != parity


class NBar:
    def __init__(self, bid, count):
        self.bid, self.count, self.arrived, self.gen = bid, count, 0, 0

    def arrive(self):
        self.arrived += 32
        if self.arrived == self.count:
            self.arrived = 0
            self.gen += 1
        elif self.arrived > self.count:
            raise Violation(f"named barrier {self.bid}: over-arrived")


def run(nkt, nst, rng):
    qfull = MBar("qfull", 1)
    kfull = [MBar(f"kfull{s}", 1) for s in range(nst)]
    vfull = [MBar(f"vfull{s}", 1) for s in range(nst)]
    kempty = [MBar(f"kempty{s}", 8) for s in range(nst)]
    vempty = [MBar(f"vempty{s}", 8) for s in range(nst)]
    nbar = {1: NBar(1, 256), 2: NBar(2, 256), 3: NBar(3, 128), 4: NBar(4, 128)}
    stage = {}  # ("K"|"V"|"Q", s) -> tile id written
    inflight_reads = {}  # ("K", s) -> number of in-flight reads
    tma_q = []  # pending TMA boxes: (kind, s, tile, bar, half)
    boxes_written = {}  # (kind, s, tile) -> halves written

    def tma(kind, s, tile, bar):
        for half in range(2):
            tma_q.append((kind, s, tile, bar, half))

    def tma_complete(op):
        kind, s, tile, bar, half = op
        if inflight_reads.get((kind, s), 0):
            raise Violation(f"TMA writes {kind} stage {s} (tile {tile}) while a read of it is in flight")
        key = (kind, s, tile)
        boxes_written[key] = boxes_written.get(key, 0) + 1
        if boxes_written[key] == 2:
            stage[(kind, s)] = tile
        else:
            stage[(kind, s)] = None  # half written: not a whole tile
        bar.complete_tx(HB)

    def producer():
        qfull.expect_tx(TB)
        tma("Q", 0, 0, qfull)
        for j in range(nkt + 1):
            if j < nkt:
                s, u = j % nst, j // nst
                if u > 0:
                    yield lambda b=kempty[s], p=(u - 1) & 1: b.passed(p)
                kfull[s].expect_tx(TB)
                tma("K", s, j, kfull[s])
            if j > 0:
                jv = j - 1
                s, u = jv % nst, jv // nst
                if u > 0:
                    yield lambda b=vempty[s], p=(u - 1) & 1: b.passed(p)
                vfull[s].expect_tx(TB)
                tma("V", s, jv, vfull[s])

    class Warp:
        def __init__(self, wg, w):
            self.wg, self.w, self.groups = wg, w, []  # groups: list of lists of (kind, s, tile)

    warps = [Warp(wg, w) for wg in range(2) for w in range(4)]

    def issue(warp, reads):
        for kind, s, tile in reads:
            if stage.get((kind, s)) != tile:
                raise Violation(f"warp {warp.wg}.{warp.w} reads {kind} stage {s}: holds tile "
                                f"{stage.get((kind, s))}, expected {tile}")
            inflight_reads[(kind, s)] = inflight_reads.get((kind, s), 0) + 1
        warp.groups.append(list(reads))

    def group_complete(warp):
        reads = warp.groups.pop(0)
        for kind, s, tile in reads:
            if stage.get((kind, s)) != tile:
                raise Violation(f"warp {warp.wg}.{warp.w}: {kind} stage {s} changed under a read")
            inflight_reads[(kind, s)] -= 1

    def bar_sync(bid):
        b = nbar[bid]
        g = b.gen
        b.arrive()
        yield lambda: b.gen != g

    def consumer(warp):
        wg = warp.wg
        if wg == 1:
            nbar[1].arrive()
        yield lambda: qfull.passed(0)
        yield lambda: kfull[0].passed(0)
        issue(warp, [("Q", 0, 0), ("K", 0, 0)])
        yield lambda: len(warp.groups) <= 0
        kempty[0].arrive()
        for j in range(1, nkt):
            s, sv = j % nst, (j - 1) % nst
            yield lambda b=kfull[s], p=(j // nst) & 1: b.passed(p)
            yield lambda b=vfull[sv], p=((j - 1) // nst) & 1: b.passed(p)
            yield from bar_sync(1 + wg)
            issue(warp, [("Q", 0, 0), ("K", s, j)])
            issue(warp, [("V", sv, j - 1)])
            nbar[2 - wg].arrive()
            yield lambda: len(warp.groups) <= 1
            kempty[s].arrive()
            yield lambda: len(warp.groups) <= 0
            vempty[sv].arrive()
        sl = (nkt - 1) % nst
        yield lambda: vfull[sl].passed(((nkt - 1) // nst) & 1)
        issue(warp, [("V", sl, nkt - 1)])
        yield lambda: len(warp.groups) <= 0
        if wg == 0:
            yield from bar_sync(1)
        yield from bar_sync(3 + wg)

    agents = [(producer(), None)] + [(consumer(w), w) for w in warps]
    conds = [lambda: True] * len(agents)
    done = [False] * len(agents)
    steps = 0
    while True:
        steps += 1
        if steps > 200000:
            raise Violation("no progress bound reached")
        choices = []
        for i, (gen, _) in enumerate(agents):
            if not done[i] and conds[i]():
                choices.append(("agent", i))
        for k in range(len(tma_q)):
            choices.append(("tma", k))
        for w in warps:
            if w.groups:
                choices.append(("wgmma", w))
        if not choices:
            if all(done):
                break
            blocked = [i for i in range(len(agents)) if not done[i]]
            raise Violation(f"deadlock: agents {blocked} blocked (nkt {nkt}, NST {nst})")
        kind, x = rng.choice(choices)
        if kind == "agent":
            gen = agents[x][0]
            try:
                conds[x] = next(gen)
            except StopIteration:
                done[x] = True
        elif kind == "tma":
            # boxes of one mbarrier complete in any order; keep FIFO per stage as hardware
            # writes distinct boxes independently: any order is allowed here
            op = tma_q.pop(x)
            tma_complete(op)
        else:
            group_complete(x)
    for b in nbar.values():
        if b.arrived:
            raise Violation(f"named barrier {b.bid} ends with {b.arrived} threads arrived")
    for b in [qfull] + kfull + vfull:
        if b.tx or b.pending != b.count:
            raise Violation(f"{b.name} ends mid-phase")
    # empties: the last V use is never released; all others end complete
    for b in kempty + vempty:
        if b.pending not in (b.count,):
            raise Violation(f"{b.name} ends with {b.count - b.pending} of {b.count} arrivals")
    return steps


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    rng = random.Random(12345)
    total = 0
    for r in range(runs):
        for nst in (2, 3):
            for nkt in (1, 2, 3, 4, 5, 7, 9):
                total += 1
                try:
                    run(nkt, nst, rng)
                except Violation as e:
                    print(f"run {r}: nkt {nkt} NST {nst}: {e}")
                    return 1
    print(f"{total} random interleavings (nkt 1-9, NST 2 and 3): no deadlock, every read saw its tile, "
          f"every barrier ends even")
    return 0


if __name__ == "__main__":
    sys.exit(main())
