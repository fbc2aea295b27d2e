#!/usr/bin/env python3
"""Explicit-state model checker for shardis's online rebalancing protocol.

docs/rebalancing.md is the protocol; this script checks it mechanically. It explores, breadth
first and exhaustively, every interleaving of a small system:

- 3 backends: b0 (the decider: first by name of the old layout), b1, and b2 (new in the new
  layout). Each holds data, a copy of the layout record, an ack set, and the server side of every
  connection (at most one request in flight each, so a connection is a FIFO of length one).
- keys that move (old owner -> new owner) and, at larger bounds, one that stays.
- 2 shardis instances (slots), each running client operations (GET, SET, DEL) one at a time,
  the barrier (adopt, hold, drain, ack), the proposer/finisher (propose, repair copies, fence,
  commit, abort) and the sweeper (lease, SCAN cursor, MIGRATE, save progress, finish).
- faults: an instance crashes (its requests in flight may still execute later), restarts as a
  new incarnation, abandons a request on timeout (the request may still execute), is cut off
  from every backend for a while; MIGRATE may succeed, fail cleanly, or time out after the
  target restored the key (the key is then on both backends); an abstract clock ticks timers
  (sweeper lease; heartbeats and instance leases in the timed design).
  A pause (SIGSTOP) needs no special step: an instance that takes no step while others and the
  clock move on is paused, and every such schedule is explored.

Invariants, checked in every reachable state:
- a read returns the value of the last write or delete that took effect (linearizable register);
- the ghost value of every key equals what a reader would find (old owner if it still holds
  the key, else new owner): no acknowledged write is lost, no deleted key comes back;
- no command routed by the old ring executes on a moving key's old owner after any command
  routed by the new ring touched that key (MIGRATE or a command on the new owner);
- once the decider's record is stable on the new layout, no moving key is on its old owner;
  while it is stable on the old layout, preparing, or aborted, none is on its new owner;
- no copy of the record and no instance's view is `migrating`/`stable new` while another
  says `aborted`.

Designs: `fenced` is the protocol of docs/rebalancing.md. `timed` is the starting design it
replaced (no CLIENT KILL fence, no record check on new connections; safety rests on heartbeat
TTLs and instance self-leases). `--mutate NAME` removes one safeguard; `--mutations` runs them
all and prints the counterexample each one finds. `--scenario proposal` checks rival proposers.

Usage: rebalance_model.py [--bound tiny|small|medium] [--design fenced|timed] [--mutate NAME]
       rebalance_model.py --mutations [--bound small]
       rebalance_model.py --scenario proposal [--mutate decider-union]
"""

import argparse
import sys
import time
from collections import deque

# Record phases. The number is also the adoption rank: an instance adopts the highest it reads.
# ABORT outranks PREP only; it never coexists with MIG or S_NEW (an invariant checks it).
NONE, S_OLD, PREP, MIG, S_NEW, ABORT = -1, 0, 1, 2, 3, 4
PHASE = {NONE: "none", S_OLD: "stable(old)", PREP: "preparing", MIG: "migrating",
         S_NEW: "stable(new)", ABORT: "aborted"}
DEC = 0  # the decider backend
NB = 3

BOUNDS = {
    # keys: (old owner, new owner) per key; ops: client operations per instance slot;
    # finishers/sweepers: the slots that may take those roles (a restarted incarnation keeps
    # its slot's roles, so a crash of slot 0 exercises takeover by a new instance).
    # tiny: what `make test` runs (seconds).
    "tiny": dict(keys=[(1, 2)], ops=(0, 1), crashes=0, restart_ops=0, abandons=1, cuts=0,
                 migfails=0, lease_ttl=1, finishers=(0,), sweepers=(0,)),
    # small: `make model`'s default: adds a MIGRATE fault and a crash with restart.
    "small": dict(keys=[(1, 2)], ops=(0, 1), crashes=1, restart_ops=0, abandons=1, cuts=0,
                  migfails=1, lease_ttl=1, finishers=(0,), sweepers=(0,)),
    # medium: two moving keys (one from the decider, so two losing backends), a cut-off.
    "medium": dict(keys=[(1, 2), (0, 2)], ops=(0, 1), crashes=0, restart_ops=0, abandons=1,
                   cuts=1, migfails=1, lease_ttl=1, finishers=(0,), sweepers=(0,)),
    # roles: both slots may finish and sweep (concurrent finishers and sweepers).
    "roles": dict(keys=[(1, 2)], ops=(0, 1), crashes=0, restart_ops=0, abandons=1, cuts=0,
                  migfails=1, lease_ttl=1, finishers=(0, 1), sweepers=(0, 1)),
    # large: two client instances, crash and cut-off (not finished here: over 10 million
    # states; needs a machine with more memory than a 24 GiB one shared with builds).
    "large": dict(keys=[(1, 2), (0, 2)], ops=(1, 1), crashes=1, restart_ops=0, abandons=1,
                  cuts=1, migfails=1, lease_ttl=1, finishers=(0, 1), sweepers=(0, 1)),
}

MUTATIONS = {
    # fenced design
    "no-fence": "the finisher does not CLIENT KILL the connections of instances that did not ack",
    "no-handshake": "a new connection does not read the record before it carries requests",
    "no-reroute": "a request routed under an older view is written to a link anyway",
    "ack-no-drain": "an instance acks with a request still in flight on a losing backend",
    "ack-ignores-orphans": "an instance acks while a connection it abandoned still holds a request",
    "del-new-first": "DEL of a moving key deletes on the new owner before the old one",
    "run-after-migrate-error": "a command runs on the new owner after its MIGRATE failed",
    "no-replace": "MIGRATE without REPLACE, BUSYKEY taken as 'already moved'",
    "cursor-before-migrate": "the sweeper saves its cursor before its MIGRATEs are done",
    "sweep-ignores-failures": "a failed MIGRATE does not make the sweep pass dirty",
    "abort-from-migrating": "a migration may be rolled back after it started migrating",
    # timed (starting) design
    "hb-after-read": "timed: an instance reads the record, then writes its heartbeat",
    "no-expiry-wait": "timed: the proposer does not wait for live heartbeats to ack or expire",
    "lease-from-reply": "timed: an instance measures its lease from the heartbeat's reply",
    # proposal scenario
    "decider-union": "proposal: the decider is the first backend of old+new layouts, not old",
}
# Relaxations that must stay safe (they show what safety does NOT depend on).
RELAXATIONS = {
    "no-lease-check": "the sweeper saves progress without checking that it still holds the lease",
    "no-eager-acks": "give vacuous acks as separate steps (no partial-order reduction)",
    "fence-losing-only": "drain, ack and fence only the backends that lose keys (enough within "
                         "one epoch; docs/rebalancing.md 8.4 says why not across epochs)",
}

TIMED_MUTATIONS = {"hb-after-read", "no-expiry-wait", "lease-from-reply"}


class Violation(Exception):
    pass


class Model:
    def __init__(self, bound, design, mutations, atomic_send=False, overrides=None):
        b = dict(BOUNDS[bound])
        b.update(overrides or {})
        self.crash_budget = b["crashes"]
        # which instance slots may act as finisher (fence, commit, abort) and as sweeper
        self.finishers = b.get("finishers", (0, 1))
        self.sweepers = b.get("sweepers", (0, 1))
        self.bound = bound
        self.design = design
        self.mut = set(mutations)
        self.atomic_send = atomic_send
        self.keys = b["keys"]
        self.nk = len(self.keys)
        self.old = [o for o, _ in self.keys]
        self.new = [n for _, n in self.keys]
        self.moving = [o != n for o, n in self.keys]
        self.losing = sorted({o for o, n in self.keys if o != n})
        # the barrier (drain, ack, fence) covers every backend of the old and new layouts
        # (docs/rebalancing.md 8.4); "fence-losing-only" narrows it to the losing backends
        self.fenced = self.losing if "fence-losing-only" in mutations else list(range(NB))
        self.sweep_keys = {x: [k for k in range(self.nk) if self.moving[k] and self.old[k] == x]
                           for x in self.losing}
        self.ops = b["ops"] if isinstance(b["ops"], tuple) else (b["ops"], b["ops"])
        self.restart_ops = b["restart_ops"]
        self.lease_ttl = b["lease_ttl"]
        self.hb_ttl = 2  # timed design: heartbeat TTL on the decider, in ticks
        self.margin = 1  # timed design: an instance stops serving `margin` ticks before it
        self.budget = (b["crashes"], b["abandons"], b["cuts"], b["migfails"])

    # ---- state layout -------------------------------------------------------------------
    # S = (data, rec, acks, bconns, live, lease, prog, truth, newseen, insts, glob)
    # inst = (inc, alive, view, op, conns, ops_left, sw, fin, lease_left, cut, hbpend)
    # op = (kind, key, val, stage, step, rview); stage N(ew) H(eld) R(outed) S(ent)
    def initial(self):
        data = [[0] * self.nk for _ in range(NB)]
        truth = []
        for k, (o, _) in enumerate(self.keys):
            data[o][k] = 1  # every key starts with value 1 on its old owner
            truth.append(1)
        rec = (S_OLD, S_OLD, NONE)
        insts = tuple((i, True, S_OLD, None, (False,) * NB, self.ops[i], None, 0,
                       self.hb_ttl - self.margin if self.design == "timed" else 0, False, 0)
                      for i in range(2))
        live = ((), (), ())
        if self.design == "timed":
            live = (tuple((i, self.hb_ttl) for i in range(2)), (), ())
        glob = (2, 2) + self.budget  # next_inc, next_val, crashes, abandons, cuts, migfails
        return (tuple(tuple(r) for r in data), rec, (0,) * NB, ((),) * NB, live, (-1, 0),
                tuple((0, False) for _ in self.losing), tuple(truth), 0, insts, glob)

    # ---- helpers ----------------------------------------------------------------------
    def plan(self, kind, k, rview, val):
        """(backend, request) steps for a client operation routed under view `rview`;
        None when it must be held. request = (kind, key, val, old_ring, part)."""
        o, n = self.keys[k]
        if not self.moving[k]:
            return ((o, (kind, k, val, False, 0)),)
        if rview in (S_OLD, ABORT):
            return ((o, (kind, k, val, True, 0)),)
        if rview == PREP:
            return None
        if rview == S_NEW:
            return ((n, (kind, k, val, False, 0)),)
        # migrating
        if kind == "del":
            if "del-new-first" in self.mut:
                return ((n, ("del", k, 0, False, 1)), (o, ("del", k, 0, False, 2)))
            return ((o, ("del", k, 0, False, 1)), (n, ("del", k, 0, False, 2)))
        return ((o, ("mig", k, 0, False, 0)), (n, (kind, k, val, False, 0)))

    def logical(self, data, k):
        o, n = self.keys[k]
        if data[o][k]:
            return data[o][k]
        return data[n][k] if self.moving[k] else 0

    @staticmethod
    def slot_of(insts, inc):
        for i, st in enumerate(insts):
            if st[0] == inc:
                return i
        return -1

    def check_state(self, S):
        data, rec, insts = S[0], S[1], S[9]
        truth = S[7]
        for k in range(self.nk):
            if truth[k] != self.logical(data, k):
                return ("key k%d: last effective write/delete left %s, but a reader would find %s"
                        % (k, truth[k] or "nothing", self.logical(data, k) or "nothing"))
        d = rec[DEC]
        for k in range(self.nk):
            if not self.moving[k]:
                continue
            o, n = self.keys[k]
            if d == S_NEW and data[o][k]:
                return "record stable(new) while moving key k%d is still on its old owner b%d" % (k, o)
            if d in (S_OLD, PREP, ABORT) and data[n][k]:
                return "record %s while moving key k%d is on its new owner b%d" % (PHASE[d], k, n)
        seen = set(rec) | {st[2] for st in insts if st[1]}
        if ABORT in seen and (MIG in seen or S_NEW in seen):
            return "a record copy or view says aborted while another says migrating/stable(new)"
        return None

    # ---- successors -------------------------------------------------------------------
    def successors(self, S):
        data, rec, acks, bconns, live, lease, prog, truth, newseen, insts, glob = S
        out = []

        def with_inst(i, st, **kw):
            lst = list(S)
            ins = list(insts)
            ins[i] = st
            lst[9] = tuple(ins)
            for name, v in kw.items():
                lst[FIELDS[name]] = v
            return tuple(lst)

        timed = self.design == "timed"
        for i, st in enumerate(insts):
            inc, alive, view, op, conns, ops_left, sw, fin, lease_left, cut, hbpend = st
            tag = "i%d" % inc
            if not alive:
                # restart as a new incarnation (new instance id) that must read the record first
                if glob[0] < 2 + self.crash_budget:
                    ninc = glob[0]
                    nst = (ninc, True, NONE, None, (False,) * NB, self.restart_ops, None, 0, 0,
                           False, 0)
                    out.append(("%s restarts as i%d (reads the record before serving)" % (tag, ninc),
                                with_inst(i, nst, glob=(ninc + 1,) + glob[1:])))
                continue

            def upd(st=st, **kw):
                lst = list(st)
                for name, v in kw.items():
                    lst[INST_IDX[name]] = v
                return tuple(lst)

            # crash: requests already on the wire stay deliverable
            if glob[2] > 0:
                nb = tuple(tuple(sorted((c[0], False, c[2], c[3]) if c[0] == inc else c
                                        for c in row))
                           for row in bconns)
                out.append(("%s crashes" % tag,
                            with_inst(i, (inc, False, view, None, (False,) * NB, 0, None, 0, 0, False, 0),
                                      glob=glob[:2] + (glob[2] - 1,) + glob[3:], bconns=nb)))
            # cut off from every backend, and healed
            if not cut and glob[4] > 0:
                out.append(("%s is cut off from every backend" % tag,
                            with_inst(i, upd(cut=True), glob=glob[:4] + (glob[4] - 1,) + glob[5:])))
            if cut:
                out.append(("%s is reachable again" % tag, with_inst(i, upd(cut=False))))

            # -- client operations --
            if op is None and ops_left > 0:
                for kind in ("get", "set", "del"):
                    for k in range(self.nk):
                        # a value unique to this write, that does not depend on the schedule
                        val = 2 + inc * 4 + ops_left if kind == "set" else 0
                        out.append(("%s client %s k%d%s" % (tag, kind.upper(), k,
                                                            "=%d" % val if val else ""),
                                    with_inst(i, upd(op=(kind, k, val, "N", 0, NONE),
                                                     ops_left=ops_left - 1))))
            if op is not None:
                kind, k, val, stage, step, rview = op
                if stage in "NH" and view != NONE:
                    ok = True
                    if timed and lease_left <= 0:
                        ok = False  # stopped serving: lease lapsed
                    if stage == "H" and view == PREP:
                        ok = False
                    if ok:
                        p = self.plan(kind, k, view, val)
                        if p is None:
                            if stage == "N":
                                out.append(("%s holds %s k%d (preparing)" % (tag, kind.upper(), k),
                                            with_inst(i, upd(op=(kind, k, val, "H", 0, view)))))
                        else:
                            out.append(("%s routes %s k%d under %s -> b%d" %
                                        (tag, kind.upper(), k, PHASE[view], p[0][0]),
                                        with_inst(i, upd(op=(kind, k, val, "R", 0, view)))))
                if stage == "H":
                    out.append(("%s answers held %s k%d with an error (hold timeout)" %
                                (tag, kind.upper(), k), with_inst(i, upd(op=None))))
                if stage == "R" and not cut:
                    p = self.plan(kind, k, rview, val)
                    x, req = p[step]
                    stale = rview != view
                    if timed:
                        stale = stale and "no-reroute" not in self.mut
                        if self.atomic_send and lease_left <= 0:
                            stale = True
                    elif "no-reroute" in self.mut:
                        stale = False
                    if stale:
                        out.append(("%s re-routes %s k%d (routed under %s, view now %s)" %
                                    (tag, kind.upper(), k, PHASE[rview], PHASE[view]),
                                    with_inst(i, upd(op=(kind, k, val, "N", 0, NONE)))))
                    elif not conns[x]:
                        out.extend(self.connect(S, i, st, x, with_inst, upd))
                    else:
                        j = self.find_conn(bconns[x], inc)
                        if j >= 0 and bconns[x][j][2] is None:
                            nb = self.set_conn(bconns, x, j, ("q", req))
                            out.append(("%s sends %s to b%d" % (tag, self.req_str(req), x),
                                        with_inst(i, upd(op=(kind, k, val, "S", step, rview)),
                                                  bconns=nb)))
                if stage == "S" and glob[3] > 0:
                    x = self.plan(kind, k, rview, val)[step][0]
                    j = self.find_conn(bconns[x], inc)
                    if j >= 0:
                        c = bconns[x][j]
                        nb = self.set_tuple(bconns, x, tuple(sorted(
                            bconns[x][:j] + ((c[0], False, c[2], c[3]),) + bconns[x][j + 1:])))
                        out.append(("%s gives up waiting on b%d (timeout; the request stays on "
                                    "the wire)" % (tag, x),
                                    with_inst(i, upd(op=None, conns=self.set_tuple(conns, x, False)),
                                              bconns=nb,
                                              glob=glob[:3] + (glob[3] - 1,) + glob[4:])))

            # -- connections --
            for x in range(NB):
                if cut or not conns[x]:
                    continue
                j = self.find_conn(bconns[x], inc)
                if j < 0:
                    # the server side is gone (killed): the link is dead; its request failed
                    nop = op
                    if op is not None and op[3] == "S" and \
                            self.plan(op[0], op[1], op[5], op[2])[op[4]][0] == x:
                        nop = None
                    out.append(("%s sees its link to b%d closed" % (tag, x),
                                with_inst(i, upd(conns=self.set_tuple(conns, x, False), op=nop))))
                    continue
                infl = bconns[x][j][2]
                if infl is not None and infl[0] == "r" and op is not None and op[3] == "S":
                    out.extend(self.receive(S, i, st, x, j, infl[1], with_inst, upd))

            if cut:
                continue
            # -- reading the record (heartbeat round; in the timed design, on the decider) --
            for x in range(NB):
                if timed and x == DEC:
                    continue
                nview = max(view, rec[x])
                if nview != view:
                    out.append(("%s reads record on b%d: %s" % (tag, x, PHASE[rec[x]]),
                                with_inst(i, upd(view=nview))))
            if timed:
                out.extend(self.timed_heartbeat(S, i, st, with_inst, upd))
            # kill our own abandoned connections (so that we may ack)
            for x in self.fenced:
                orphans = [c for c in bconns[x] if c[0] == inc and not c[1]]
                if orphans:
                    nb = list(bconns)
                    nb[x] = tuple(c for c in bconns[x] if not (c[0] == inc and not c[1]))
                    out.append(("%s kills its own abandoned connection on b%d" % (tag, x),
                                with_inst(i, st, bconns=tuple(nb))))
            # -- barrier: ack on each losing backend once drained --
            if view in (PREP, MIG):
                ack_at = self.fenced if not timed else [DEC]
                for x in ack_at:
                    if acks[x] >> inc & 1:
                        continue
                    drained = True
                    for y in (self.fenced if timed else [x]):
                        for c in bconns[y]:
                            if c[0] != inc:
                                continue
                            if c[1]:
                                if c[2] is not None and c[2][0] == "q" and \
                                        "ack-no-drain" not in self.mut:
                                    drained = False
                            elif c[2] is not None and c[2][0] == "q" and \
                                    "ack-ignores-orphans" not in self.mut:
                                drained = False
                    if drained:
                        na = self.set_tuple(acks, x, acks[x] | (1 << inc))
                        out.append(("%s acks epoch on b%d" % (tag, x),
                                    with_inst(i, st, acks=na)))
            # -- proposer / finisher --
            if i == 0 and view == S_OLD and rec[DEC] == S_OLD:
                nr = self.set_tuple(rec, DEC, PREP)
                out.append(("%s proposes: CAS b%d stable(old) -> preparing" % (tag, DEC),
                            with_inst(i, upd(view=PREP), rec=nr)))
            if view in (PREP, MIG, S_NEW, ABORT):
                for x in range(NB):
                    if rec[x] < view and not (view == ABORT and rec[x] >= MIG):
                        out.append(("%s repairs b%d's record copy to %s" % (tag, x, PHASE[view]),
                                    with_inst(i, st, rec=self.set_tuple(rec, x, view))))
            if view == PREP and i in self.finishers:
                if not timed:
                    for x in self.fenced:
                        if fin >> x & 1 or rec[x] < PREP:
                            continue
                        nb = list(bconns)
                        if "no-fence" not in self.mut:
                            # spare acked instances, and connections opened after the record
                            # here said preparing (id > F: their handshake read it)
                            nb[x] = tuple(c for c in bconns[x] if acks[x] >> c[0] & 1 or c[3])
                        killed = len(bconns[x]) - len(nb[x])
                        out.append(("%s fences b%d: CLIENT KILL %d connection(s) of instances "
                                    "that did not ack" % (tag, x, killed),
                                    with_inst(i, upd(fin=fin | 1 << x), bconns=tuple(nb))))
                    can_commit = all(fin >> x & 1 for x in self.fenced)
                else:
                    can_commit = True
                    if "no-expiry-wait" not in self.mut:
                        for (li, ttl) in live[DEC]:
                            if ttl > 0 and not acks[DEC] >> li & 1:
                                can_commit = False
                if can_commit and rec[DEC] == PREP:
                    out.append(("%s commits: CAS b%d preparing -> migrating" % (tag, DEC),
                                with_inst(i, upd(view=MIG), rec=self.set_tuple(rec, DEC, MIG))))
            if i in self.finishers and (view == PREP and rec[DEC] == PREP or
                                        "abort-from-migrating" in self.mut and view == MIG and
                                        rec[DEC] == MIG):
                out.append(("%s aborts: CAS b%d %s -> aborted" % (tag, DEC, PHASE[rec[DEC]]),
                            with_inst(i, upd(view=ABORT), rec=self.set_tuple(rec, DEC, ABORT))))
            # -- sweeper --
            if view == MIG and i in self.sweepers:
                out.extend(self.sweeper(S, i, st, with_inst, upd))

        # -- backends execute requests on the wire --
        for x in range(NB):
            for j, c in enumerate(bconns[x]):
                if c[2] is None or c[2][0] != "q":
                    continue
                si = self.slot_of(insts, c[0])
                if si >= 0 and insts[si][1] and insts[si][9]:
                    continue  # sender cut off: its bytes are delayed
                out.extend(self.execute(S, x, j, c))

        # -- the clock --
        out.extend(self.tick(S))
        return out

    def connect(self, S, i, st, x, with_inst, upd):
        """Open a connection; its handshake reads the record copy there (fenced design)."""
        rec, bconns = S[1], S[3]
        inc, view, conns = st[0], st[2], st[4]
        # fresh: opened after this backend's record copy said preparing or later; the fence
        # spares such connections (docs/rebalancing.md 8.4, "id > F")
        fresh = rec[x] >= PREP
        nb = self.set_tuple(bconns, x, tuple(sorted(bconns[x] + ((inc, True, None, fresh),))))
        nview = view
        if self.design == "fenced" and "no-handshake" not in self.mut:
            nview = max(view, rec[x])
            lbl = "i%d connects to b%d, handshake reads %s" % (inc, x, PHASE[rec[x]])
        else:
            lbl = "i%d connects to b%d" % (inc, x)
        return [(lbl, with_inst(i, upd(conns=self.set_tuple(conns, x, True), view=nview),
                                bconns=nb))]

    def canon(self, S):
        """Forget what no step can read any more, so that equivalent states are one:
        - server-side connections abandoned with nothing left to execute (the reply goes nowhere);
        - the local state of a crashed incarnation (only its connections live on);
        - once the decider says stable(new): the sweeper lease, progress and sweeper states.
          A stale sweeper could still MIGRATE, but the old owners hold no moving key then (an
          invariant checked in that very state), so its MIGRATE is NOKEY and changes nothing."""
        bconns = S[3]
        if not all(c[1] or (c[2] is not None and c[2][0] == "q") for row in bconns for c in row):
            bconns = tuple(tuple(c for c in row if c[1] or (c[2] is not None and c[2][0] == "q"))
                           for row in bconns)
            S = S[:3] + (bconns,) + S[4:]
        insts = S[9]
        if self.design == "fenced" and "no-eager-acks" not in self.mut:
            # Partial-order reduction: an instance that has adopted preparing (or later) and has
            # no connection at all on a backend, current or abandoned, has nothing to drain
            # there; its ack on that backend is always enabled and is the same whenever it is
            # given, so it is given at once. (Run with --mutate no-eager-acks to check without
            # this reduction: same verdicts, more states.)
            acks = S[2]
            nacks = list(acks)
            for st in insts:
                if st[1] and st[2] in (PREP, MIG):
                    for x in self.fenced:
                        if not nacks[x] >> st[0] & 1 and \
                                not any(c[0] == st[0] for c in S[3][x]):
                            nacks[x] |= 1 << st[0]
            nacks = tuple(nacks)
            if nacks != acks:
                S = S[:2] + (nacks,) + S[3:]
        done = S[1][DEC] == S_NEW
        ni = tuple((st[0], False, NONE, None, (False,) * NB, 0, None, 0, 0, False, 0)
                   if not st[1] else (st[:6] + (None,) + st[7:] if done else st)
                   for st in insts)
        if done:
            S = S[:5] + ((-1, 0), tuple((len(self.sweep_keys[x]), False) for x in self.losing)) \
                + S[7:]
        if ni != insts:
            S = S[:9] + (ni,) + S[10:]
        return S

    def receive(self, S, i, st, x, j, res, with_inst, upd):
        data, rec, acks, bconns = S[0], S[1], S[2], S[3]
        inc = st[0]
        kind, k, val, stage, step, rview = st[3]
        p = self.plan(kind, k, rview, val)
        if p[step][0] != x:
            return []
        nb = self.set_conn(bconns, x, j, None)
        tag = "i%d" % inc
        req = p[step][1]
        if req[0] == "mig" and res == "err" and "run-after-migrate-error" not in self.mut:
            return [("%s gets MIGRATE error: answers %s k%d with an error" % (tag, kind.upper(), k),
                     with_inst(i, upd(op=None), bconns=nb))]
        if step + 1 < len(p):
            return [("%s gets %s from b%d, next step" % (tag, res, x),
                     with_inst(i, upd(op=(kind, k, val, "R", step + 1, rview)), bconns=nb))]
        return [("%s gets %s from b%d: %s k%d done" % (tag, res, x, kind.upper(), k),
                 with_inst(i, upd(op=None), bconns=nb))]

    def execute(self, S, x, j, c):
        data, rec, acks, bconns, live, lease, prog, truth, newseen, insts, glob = S
        inc, _cur, (q, req), _fresh = c
        kind, k, val, old_ring, part = req
        o, nw = self.keys[k]
        who = "b%d runs %s from i%d" % (x, self.req_str(req), inc)
        if old_ring and newseen >> k & 1:
            raise Violation("b%d runs %s routed by the OLD ring after the new ring touched k%d"
                            % (x, self.req_str(req), k))
        results = []
        d = [list(r) for r in data]
        t = list(truth)
        ns = newseen
        if kind == "get":
            got = d[x][k]
            if got != t[k]:
                raise Violation("GET k%d on b%d returns %s but the last write left %s"
                                % (k, x, got or "nothing", t[k] or "nothing"))
            results.append((who, d, t, ns, got or "nil", glob))
        elif kind == "set":
            d[x][k] = val
            t[k] = val
            if self.moving[k] and x == nw:
                ns |= 1 << k
            results.append((who, d, t, ns, "OK", glob))
        elif kind == "del":
            d[x][k] = 0
            if self.moving[k] and x == nw:
                ns |= 1 << k
            if part in (0, 2) or self.logical(d, k) == 0:
                t[k] = 0
            results.append((who, d, t, ns, "OK", glob))
        elif kind == "mig":
            results.extend(self.migrate(d, t, ns, glob, x, k, who))
        out = []
        for (lbl, d2, t2, ns2, res, g2) in results:
            nb = self.set_conn(bconns, x, j, ("r", res))
            lst = list(S)
            lst[0] = tuple(tuple(r) for r in d2)
            lst[3] = nb
            lst[7] = tuple(t2)
            lst[8] = ns2
            lst[10] = g2
            out.append(("%s -> %s" % (lbl, res), tuple(lst)))
        return out

    def migrate(self, d, t, ns, glob, x, k, who):
        """MIGRATE k from x to its new owner: every outcome a real MIGRATE can have."""
        o, nw = self.keys[k]
        res = []
        if not d[x][k]:
            return [(who, d, t, ns, "NOKEY", glob)]
        if d[nw][k] and "no-replace" in self.mut:
            return [(who + " (target has it: BUSYKEY, taken as moved)", d, t, ns, "OK", glob)]
        d1 = [list(r) for r in d]
        d1[nw][k] = d1[x][k]
        d1[x][k] = 0
        res.append((who, d1, list(t), ns | 1 << k, "OK", glob))
        if glob[5] > 0:
            g = glob[:5] + (glob[5] - 1,)
            d2 = [list(r) for r in d]
            d2[nw][k] = d2[x][k]
            res.append((who + " (times out after the target restored it)", d2, list(t),
                        ns | 1 << k, "err", g))
            res.append((who + " (target unreachable)", [list(r) for r in d], list(t), ns, "err", g))
        return res

    def sweeper(self, S, i, st, with_inst, upd):
        data, rec, acks, bconns, live, lease, prog, truth, newseen, insts, glob = S
        inc, sw = st[0], st[6]
        tag = "i%d" % inc
        out = []
        holder, ttl = lease
        if rec[DEC] == MIG and (holder == -1 or ttl == 0):
            out.append(("%s takes the sweeper lease" % tag,
                        with_inst(i, upd(sw=("i",)), lease=(inc, self.lease_ttl))))
        if holder == inc and ttl < self.lease_ttl and ttl > 0:
            out.append(("%s renews the sweeper lease" % tag,
                        with_inst(i, st, lease=(inc, self.lease_ttl))))
        if sw is None:
            return out
        if sw[0] == "i":
            for li, x in enumerate(self.losing):
                c, dirty = prog[li]
                keys = self.sweep_keys[x]
                if c < len(keys):
                    k = keys[c]
                    cand = k if data[x][k] else -1
                    np = prog
                    if "cursor-before-migrate" in self.mut:
                        if holder != inc:
                            continue
                        np = self.set_tuple(prog, li, (c + 1, dirty))
                    out.append(("%s sweeper SCANs b%d at cursor %d: %s" %
                                (tag, x, c, "k%d" % k if cand >= 0 else "nothing to move"),
                                with_inst(i, upd(sw=("s", li, c, cand)), prog=np)))
            if holder == inc:
                for li, x in enumerate(self.losing):
                    if prog[li] == (len(self.sweep_keys[x]), True):
                        out.append(("%s sweeper: pass over b%d was dirty, starts another" % (tag, x),
                                    with_inst(i, st, prog=self.set_tuple(prog, li, (0, False)))))
                done = all(prog[li] == (len(self.sweep_keys[x]), False)
                           for li, x in enumerate(self.losing))
                if done and rec[DEC] == MIG:
                    out.append(("%s sweeper: every losing backend swept clean: CAS b%d "
                                "migrating -> stable(new)" % (tag, DEC),
                                with_inst(i, upd(sw=None, view=S_NEW),
                                          rec=self.set_tuple(rec, DEC, S_NEW))))
        elif sw[0] == "s":
            _, li, c, k = sw
            x = self.losing[li]
            if k < 0:
                out.append(("%s sweeper: nothing to MIGRATE at cursor %d" % (tag, c),
                            with_inst(i, upd(sw=("m", li, c, False)))))
            else:
                who = "%s sweeper MIGRATEs k%d b%d->b%d" % (tag, k, x, self.keys[k][1])
                for (lbl, d2, t2, ns2, res, g2) in self.migrate(
                        [list(r) for r in data], list(truth), newseen, glob, x, k, who):
                    lst = list(S)
                    ins = list(insts)
                    ins[i] = upd(sw=("m", li, c, res == "err"))
                    lst[0] = tuple(tuple(r) for r in d2)
                    lst[7] = tuple(t2)
                    lst[8] = ns2
                    lst[9] = tuple(ins)
                    lst[10] = g2
                    out.append(("%s -> %s" % (lbl, res), tuple(lst)))
        elif sw[0] == "m":
            _, li, c, failed = sw
            if "cursor-before-migrate" in self.mut:
                out.append(("%s sweeper batch done" % tag, with_inst(i, upd(sw=("i",)))))
                return out
            pc, dirty = prog[li]
            ok = (holder == inc or "no-lease-check" in self.mut) and pc == c
            if ok:
                nd = dirty or (failed and "sweep-ignores-failures" not in self.mut)
                out.append(("%s sweeper saves cursor %d%s on b%d" %
                            (tag, c + 1, " (dirty)" if nd else "", DEC),
                            with_inst(i, upd(sw=("i",)), prog=self.set_tuple(prog, li, (c + 1, nd)))))
            else:
                out.append(("%s sweeper's save is refused (lost the lease or cursor moved)" % tag,
                            with_inst(i, upd(sw=("i",)))))
        return out

    def timed_heartbeat(self, S, i, st, with_inst, upd):
        """Starting design: heartbeat on the decider with a TTL, then read the record there."""
        data, rec, acks, bconns, live, lease, prog, truth, newseen, insts, glob = S
        inc, view, hbpend = st[0], st[2], st[10]
        tag = "i%d" % inc
        ttl = self.hb_ttl
        mine = self.margin
        newlive = tuple(sorted([e for e in live[DEC] if e[0] != inc] + [(inc, ttl)]))
        nl = (newlive,) + live[1:]
        out = []
        if "hb-after-read" in self.mut:
            if hbpend == 0:
                out.append(("%s reads record on b%d: %s (heartbeat not yet written)" %
                            (tag, DEC, PHASE[rec[DEC]]),
                            with_inst(i, upd(view=max(view, rec[DEC]), hbpend=1))))
            else:
                out.append(("%s writes its heartbeat on b%d" % (tag, DEC),
                            with_inst(i, upd(hbpend=0, lease_left=ttl - mine), live=nl)))
        elif "lease-from-reply" in self.mut:
            if hbpend == 0:
                out.append(("%s heartbeat + record read run on b%d: %s" % (tag, DEC, PHASE[rec[DEC]]),
                            with_inst(i, upd(view=max(view, rec[DEC]), hbpend=1), live=nl)))
            else:
                out.append(("%s receives the heartbeat reply, lease starts now" % tag,
                            with_inst(i, upd(hbpend=0, lease_left=ttl - mine))))
        else:
            out.append(("%s heartbeat then record read on b%d: %s" % (tag, DEC, PHASE[rec[DEC]]),
                        with_inst(i, upd(view=max(view, rec[DEC]), lease_left=ttl - mine),
                                  live=nl)))
        return out

    def tick(self, S):
        data, rec, acks, bconns, live, lease, prog, truth, newseen, insts, glob = S
        if self.design == "timed" and self.atomic_send:
            for x in range(NB):
                for c in bconns[x]:
                    if c[2] is not None and c[2][0] == "q":
                        return []  # bounded delay: what is on the wire lands before time moves
        nlease = (lease[0], max(0, lease[1] - 1))
        nlive = tuple(tuple((li, max(0, t - 1)) for (li, t) in l if t > 1) for l in live)
        ninsts = tuple(st[:8] + (max(0, st[8] - 1),) + st[9:] for st in insts)
        if nlease == lease and nlive == live and ninsts == insts:
            return []
        lst = list(S)
        lst[4], lst[5], lst[9] = nlive, nlease, ninsts
        return [("clock ticks", tuple(lst))]

    # ---- small tuple helpers ----------------------------------------------------------
    @staticmethod
    def set_tuple(t, i, v):
        return t[:i] + (v,) + t[i + 1:]

    @staticmethod
    def find_conn(conns, inc):
        """The instance's current connection on one backend (index), or -1."""
        for j, c in enumerate(conns):
            if c[0] == inc and c[1]:
                return j
        return -1

    def set_conn(self, bconns, x, j, infl):
        c = bconns[x][j]
        row = bconns[x][:j] + ((c[0], c[1], infl, c[3]),) + bconns[x][j + 1:]
        return self.set_tuple(bconns, x, row)

    @staticmethod
    def req_str(req):
        kind, k, val, old_ring, part = req
        s = {"get": "GET", "set": "SET", "del": "DEL", "mig": "MIGRATE"}[kind] + " k%d" % k
        if kind == "set":
            s += "=%d" % val
        if old_ring:
            s += " [old ring]"
        return s


FIELDS = {n: i for i, n in enumerate(
    ["data", "rec", "acks", "bconns", "live", "lease", "prog", "truth", "newseen", "insts", "glob"])}
INST = ["inc", "alive", "view", "op", "conns", "ops_left", "sw", "fin", "lease_left", "cut", "hbpend"]
INST_IDX = {n: i for i, n in enumerate(INST)}


def explore(model, max_states=None, quiet=False):
    """Breadth-first search of every reachable state. Returns (result, stats)."""
    t0 = time.time()
    init = model.initial()
    parent = {init: None}
    queue = deque([init])
    transitions = 0
    reached_new = 0
    reached_abort = 0
    next_report = 500000
    while queue:
        S = queue.popleft()
        try:
            succ = model.successors(S)
        except Violation as v:
            return ("violation", str(v), trace(parent, S)), stats(parent, transitions, t0,
                                                                    reached_new, reached_abort)
        for label, N in succ:
            transitions += 1
            N = model.canon(N)
            if N in parent:
                continue
            parent[N] = (S, label)
            msg = model.check_state(N)
            if msg:
                return ("violation", msg, trace(parent, N)), stats(parent, transitions, t0,
                                                                    reached_new, reached_abort)
            if N[1][DEC] == S_NEW:
                reached_new += 1
            if N[1][DEC] == ABORT:
                reached_abort += 1
            queue.append(N)
            if max_states and len(parent) >= max_states:
                return ("incomplete", "state limit reached", None), stats(
                    parent, transitions, t0, reached_new, reached_abort)
        if not quiet and len(parent) >= next_report:
            next_report += 500000
            sys.stderr.write("  ... %d states, %d queued, %.0fs\n" % (len(parent), len(queue),
                                                                     time.time() - t0))
    return ("ok", None, None), stats(parent, transitions, t0, reached_new, reached_abort)


def stats(parent, transitions, t0, reached_new, reached_abort):
    return dict(states=len(parent), transitions=transitions, seconds=round(time.time() - t0, 2),
                stable_new_states=reached_new, aborted_states=reached_abort)


def trace(parent, S):
    steps = []
    while parent[S] is not None:
        S, label = parent[S]
        steps.append(label)
    return list(reversed(steps))


# ---- rival proposers (the decider rule) ------------------------------------------------------

def proposal_check(mutations):
    """Two instances propose different new layouts from the same stable record at once.

    Backends a < b < c < d by name. Old layout L = {b, c}; p1 proposes L1 = {a, b, c}, p2
    proposes L2 = {b, c, d}. A proposer CASes the decider first, then upgrades the other copies
    of its old+new layouts (a copy is upgraded only to a strictly higher (epoch, rank); an equal
    rank with a different layout is refused). Two readers, whose files name L1 and L2, adopt the
    highest copy they read on their backends. Invariant: no two copies and no two readers hold
    a preparing record of the same epoch for different layouts."""
    names = "abcd"
    L = frozenset("bc")
    targets = {1: frozenset("abc"), 2: frozenset("bcd")}
    union = {p: sorted(L | targets[p]) for p in (1, 2)}
    if "decider-union" in mutations:
        decider = {p: union[p][0] for p in (1, 2)}
    else:
        decider = {p: min(L) for p in (1, 2)}
    files = {1: sorted(targets[1]), 2: sorted(targets[2])}
    # state: (copies: tuple per backend of None|(epoch, rank, target)), proposer pcs, readers)
    init_copies = tuple((1, 3, 0) if n in L else None for n in names)
    init = (init_copies, (0, 0), (None, None))
    parent = {init: None}
    queue = deque([init])
    t0 = time.time()
    while queue:
        S = queue.popleft()
        copies, pcs, readers = S
        succ = []
        for p in (1, 2):
            pc = pcs[p - 1]
            if pc == 0:  # CAS the decider
                di = names.index(decider[p])
                if copies[di] in ((1, 3, 0), None) and (copies[di] is not None or
                                                         decider[p] not in L):
                    nc = copies[:di] + ((2, 1, p),) + copies[di + 1:]
                    succ.append(("p%d CAS %s -> preparing(L%d)" % (p, decider[p], p),
                                 (nc, pcs[:p - 1] + (1,) + pcs[p:], readers)))
                else:
                    succ.append(("p%d loses the CAS on %s: refused" % (p, decider[p]),
                                 (copies, pcs[:p - 1] + (99,) + pcs[p:], readers)))
            elif pc < 99:
                # upgrade the remaining copies, any order
                for n in union[p]:
                    if n == decider[p]:
                        continue
                    bi = names.index(n)
                    cur = copies[bi]
                    new = (2, 1, p)
                    if cur is None or (cur[0], cur[1]) < (2, 1):
                        nc = copies[:bi] + (new,) + copies[bi + 1:]
                        succ.append(("p%d writes preparing(L%d) on %s" % (p, p, n),
                                     (nc, pcs, readers)))
        for r in (1, 2):
            for n in files[r]:
                cur = copies[names.index(n)]
                have = readers[r - 1]
                if cur is None:
                    continue
                if have is None or (cur[0], cur[1]) > (have[0], have[1]):
                    nr = readers[:r - 1] + (cur,) + readers[r:]
                    succ.append(("reader r%d adopts %s from %s" % (r, cur, n), (copies, pcs, nr)))
        for label, N in succ:
            if N in parent:
                continue
            parent[N] = (S, label)
            prep = {c[2] for c in N[0] if c is not None and c[:2] == (2, 1)}
            prep |= {c[2] for c in N[2] if c is not None and c[:2] == (2, 1)}
            if len(prep) > 1:
                return ("violation", "two different layouts are both 'preparing' at epoch 2",
                        trace(parent, N)), dict(states=len(parent),
                                                seconds=round(time.time() - t0, 2))
            queue.append(N)
    return ("ok", None, None), dict(states=len(parent), seconds=round(time.time() - t0, 2))


def run_one(args, mutations, design, bound, atomic=False, scenario="migration", overrides=None):
    if scenario == "proposal":
        return proposal_check(mutations)
    ov = dict(overrides or {})
    for item in args.set:
        name, _, value = item.partition("=")
        ov[name] = int(value)
    model = Model(bound, design, mutations, atomic_send=atomic, overrides=ov)
    return explore(model, max_states=args.max_states)


def report(name, result, st, show_trace=True, out=sys.stdout):
    verdict, msg, tr = result
    out.write("%-40s %-10s states=%-9d %6.1fs" % (name, verdict.upper(), st["states"], st["seconds"]))
    if "transitions" in st:
        out.write(" transitions=%d stable(new)-states=%d aborted-states=%d" %
                  (st["transitions"], st["stable_new_states"], st["aborted_states"]))
    out.write("\n")
    if verdict == "violation":
        out.write("  violation: %s\n" % msg)
        if show_trace:
            for n, step in enumerate(tr, 1):
                out.write("  %2d. %s\n" % (n, step))
    out.flush()


MUTATION_PLAN = [
    # (mutation, design, bound, atomic_send, overrides of the bound)
    ("no-fence", "fenced", "tiny", False, {}),
    ("no-handshake", "fenced", "tiny", False, {}),
    ("no-reroute", "fenced", "tiny", False, {}),
    ("ack-no-drain", "fenced", "tiny", False, {}),
    ("ack-ignores-orphans", "fenced", "tiny", False, {}),
    ("del-new-first", "fenced", "tiny", False, {}),
    ("run-after-migrate-error", "fenced", "tiny", False, {"migfails": 1}),
    ("no-replace", "fenced", "tiny", False, {"migfails": 1}),
    ("cursor-before-migrate", "fenced", "tiny", False, {"crashes": 1}),
    ("sweep-ignores-failures", "fenced", "tiny", False, {"migfails": 1}),
    ("abort-from-migrating", "fenced", "tiny", False, {}),
    ("hb-after-read", "timed", "tiny", True, {}),
    ("no-expiry-wait", "timed", "tiny", True, {}),
    ("lease-from-reply", "timed", "tiny", True, {}),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bound", default="small", choices=list(BOUNDS))
    ap.add_argument("--design", default="fenced", choices=["fenced", "timed"])
    ap.add_argument("--atomic-send", action="store_true",
                    help="timed design: assume what is on the wire lands before the clock moves")
    ap.add_argument("--mutate", action="append", default=[],
                    choices=sorted(MUTATIONS) + sorted(RELAXATIONS))
    ap.add_argument("--mutations", action="store_true",
                    help="run every mutation; each must find a violation (exit 1 if one does not)")
    ap.add_argument("--scenario", default="migration", choices=["migration", "proposal"])
    ap.add_argument("--max-states", type=int, default=None)
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="override a bound's setting (ops, crashes, restart_ops, abandons, cuts, "
                         "migfails, lease_ttl)")
    ap.add_argument("--expect", choices=["ok", "violation"], default=None,
                    help="exit 1 unless the verdict is this")
    ap.add_argument("--no-trace", action="store_true")
    args = ap.parse_args()

    if args.mutations:
        failures = 0
        for mut, design, bound, atomic, ov in MUTATION_PLAN:
            res, st = run_one(args, [mut], design, bound, atomic, overrides=ov)
            label = "%s (%s/%s%s)" % (mut, design, bound,
                                      "".join(",%s=%s" % kv for kv in sorted(ov.items())))
            report(label, res, st, show_trace=not args.no_trace)
            if res[0] != "violation":
                failures += 1
        res, st = run_one(args, ["decider-union"], None, None, scenario="proposal")
        report("decider-union (proposal)", res, st, show_trace=not args.no_trace)
        if res[0] != "violation":
            failures += 1
        print("%d mutation(s) not caught" % failures)
        sys.exit(1 if failures else 0)

    name = "%s/%s%s%s" % (args.scenario if args.scenario != "migration" else args.design,
                          args.bound, "/atomic-send" if args.atomic_send else "",
                          "".join("+" + m for m in args.mutate))
    res, st = run_one(args, args.mutate, args.design, args.bound, args.atomic_send, args.scenario)
    report(name, res, st, show_trace=not args.no_trace)
    if args.expect and res[0] != args.expect:
        sys.exit(1)
    if not args.expect and res[0] == "violation":
        sys.exit(1)


if __name__ == "__main__":
    main()
