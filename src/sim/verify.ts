// Checks what the simulator counted against what the gateway stored, through the HTTP API
// (GET /api/v1/vehicles/{id}/uplink, PROTOCOL.md 9): loss is sent − stored, from the store.

/** What verification needs of a vehicle: its seq range in this run. */
export interface VerifiedVehicle {
  readonly id: string;
  /** First seq of the run (0: never connected, nothing to check). */
  readonly baseSeq: number;
  /** Highest seq acked (consumed) and highest seq sent. */
  readonly ackedThrough: number;
  readonly sentThrough: number;
}

export interface VerifyResult {
  vehicles: number;
  /** Records of this run found in the store. */
  records: number;
  /** Samples sent at least once, by the vehicles' seq ranges. */
  sent: number;
  /** Samples the vehicles saw acked. */
  acked: number;
  /** Sent but not in the store (sent − stored; includes samples in flight when the run ended). */
  loss: number;
  /** Acked but not in the store: must be 0. */
  lostAcked: number;
  /** Records out of seq order or repeated: must be 0. */
  disorder: number;
  /** Records beyond what the vehicles sent: must be 0. */
  extra: number;
  httpErrors: number;
  /** Vehicles whose check did not finish in time. */
  unchecked: number;
  elapsedMs: number;
}

const PAGE = 1000;

interface UplinkPage {
  items: { seq: number }[];
}

/** Pages through each vehicle's uplink after its base seq. Concurrency 16, bounded to `budgetMs`. */
export async function verifyFleet(
  vehicles: readonly VerifiedVehicle[],
  api: { httpUrl: string; adminToken: string },
  note?: (text: string) => void,
  budgetMs = 180_000,
): Promise<VerifyResult> {
  const started = performance.now();
  const deadline = started + budgetMs;
  const r: VerifyResult = {
    vehicles: 0,
    records: 0,
    sent: 0,
    acked: 0,
    loss: 0,
    lostAcked: 0,
    disorder: 0,
    extra: 0,
    httpErrors: 0,
    unchecked: 0,
    elapsedMs: 0,
  };
  const todo = vehicles.filter((v) => v.baseSeq > 0);
  let next = 0;
  const checkOne = async (v: VerifiedVehicle): Promise<boolean> => {
    let after = v.baseSeq - 1;
    let expect = v.baseSeq;
    let found = 0;
    let foundAcked = 0;
    let foundSent = 0;
    for (let page = 0; page < 100_000; page++) {
      if (performance.now() > deadline) return false;
      const res = await fetch(
        `${api.httpUrl}/api/v1/vehicles/${encodeURIComponent(v.id)}/uplink?afterSeq=${after}&limit=${PAGE}`,
        { headers: { authorization: `Bearer ${api.adminToken}` } },
      );
      if (res.status === 404) {
        await res.arrayBuffer();
        break; // never seen: nothing stored
      }
      if (res.status !== 200) {
        await res.arrayBuffer();
        r.httpErrors++;
        return false;
      }
      const body = (await res.json()) as UplinkPage;
      for (const item of body.items) {
        if (item.seq !== expect) {
          if (item.seq < expect) r.disorder++;
          // a gap: the seqs in between are missing (counted through the totals below)
        }
        expect = item.seq + 1;
        found++;
        if (item.seq <= v.ackedThrough) foundAcked++;
        if (item.seq <= v.sentThrough) foundSent++;
        else r.extra++;
        after = item.seq;
      }
      if (body.items.length < PAGE) break;
    }
    const sent = Math.max(0, v.sentThrough - v.baseSeq + 1);
    const acked = Math.max(0, v.ackedThrough - v.baseSeq + 1);
    r.vehicles++;
    r.records += found;
    r.sent += sent;
    r.acked += acked;
    r.loss += Math.max(0, sent - foundSent);
    r.lostAcked += Math.max(0, acked - foundAcked);
    return true;
  };
  const worker = async (): Promise<void> => {
    while (next < todo.length) {
      const v = todo[next++]!;
      let ok = false;
      try {
        ok = await checkOne(v);
      } catch {
        r.httpErrors++;
      }
      if (!ok) r.unchecked++;
    }
  };
  await Promise.all(Array.from({ length: Math.min(16, Math.max(1, todo.length)) }, worker));
  r.elapsedMs = Math.round(performance.now() - started);
  if (r.unchecked > 0) note?.(`verify: ${r.unchecked} vehicles could not be checked\n`);
  return r;
}
