/**
 * A SaaS chat workload: `adapters.count` adapters, each the product of one tenant app with
 * its own system prompt (~1,500 tokens); sessions arrive by a Poisson process, each on an
 * adapter drawn by Zipf, and run 2-10 turns. A turn's prompt is the system prompt, the
 * history (every earlier user turn and answer) and the new user turn (50-300 tokens); it
 * asks for an answer of 100-300 tokens. The next turn comes after the answer's expected
 * time (`decodeSPerToken` × its length) and a think time, with that answer in its history.
 *
 * The answers fed back are the trace's own tokens of the answer's length, not the model's
 * output (which is not known before the run; the API returns text): the next turn finds
 * the previous turn's whole prompt cached, and computes the answer again as part of its
 * prompt, where an app that sends the model's own tokens back would find those cached too.
 * A session ends before a turn that would not fit the model's context.
 *
 *   const trace = saasChatTrace({ ...defaultSaas, sessionRate: 1 }, 32000, 4096);
 */
import { Prng } from "./prng.ts";
import { type Trace, type TraceAdapter, type TraceRequest, zipfCumulative } from "./workload.ts";

type Range = [lo: number, hi: number];

export interface SaasSpec {
  kind: "saas";
  seed: number;
  /** one per tenant app, each with its own system prompt; ranks drawn from a set, Zipf popularity */
  adapters: { count: number; ranks: number[]; zipfAlpha: number };
  /** sessions per second (Poisson), arriving for `durationS` */
  sessionRate: number;
  durationS: number;
  /** token counts, each uniform in [lo, hi] */
  lengths: { system: Range; user: Range; answer: Range };
  turns: Range;
  thinkS: Range;
  /** how long an answer is expected to take per token, for the next turn's arrival */
  decodeSPerToken: number;
}

export const defaultSaas: SaasSpec = {
  kind: "saas",
  seed: 0,
  adapters: { count: 200, ranks: [8, 16, 32, 64], zipfAlpha: 1 },
  sessionRate: 1,
  durationS: 60,
  lengths: { system: [1400, 1600], user: [50, 300], answer: [100, 300] },
  turns: [2, 10],
  thinkS: [2, 8],
  decodeSPerToken: 0.02,
};

export function saasChatTrace(spec: SaasSpec, vocab: number, maxContext: number): Trace {
  const rng = (stream: number) => new Prng(spec.seed * 1_000_003 + stream);
  const rankRng = rng(1);
  const { count, ranks, zipfAlpha } = spec.adapters;
  const adapters: TraceAdapter[] = Array.from({ length: count }, (_, i) => ({
    name: `saas-${String(i).padStart(4, "0")}`,
    rank: ranks[rankRng.int(0, ranks.length - 1)] as number,
  }));
  const tokens = (random: Prng, [lo, hi]: Range) =>
    Array.from({ length: random.int(lo, hi) }, () => random.int(3, vocab - 1));
  const systemPrompts = adapters.map((_, i) => tokens(rng(100 + i), spec.lengths.system));
  const cumulative = zipfCumulative(count, zipfAlpha);
  const sessionRng = rng(2);
  const requests: TraceRequest[] = [];
  for (let session = 0, clock = 0; ; session++) {
    clock += sessionRng.gamma(1) / spec.sessionRate; // exponential: Poisson arrivals
    if (clock > spec.durationS) break;
    const index = sessionRng.pickCumulative(cumulative);
    const turns = sessionRng.int(spec.turns[0], spec.turns[1]);
    const turnRng = rng(10_000 + session);
    let history = systemPrompts[index] as number[];
    let arrivalS = clock;
    for (let turn = 0; turn < turns; turn++) {
      const prompt = [...history, ...tokens(turnRng, spec.lengths.user)];
      const answer = tokens(turnRng, spec.lengths.answer);
      if (prompt.length + answer.length > maxContext) break;
      requests.push({
        id: 0,
        arrivalS,
        adapter: (adapters[index] as TraceAdapter).name,
        inputLen: prompt.length,
        outputLen: answer.length,
        prompt,
      });
      history = [...prompt, ...answer];
      const [lo, hi] = spec.thinkS;
      arrivalS += answer.length * spec.decodeSPerToken + lo + turnRng.uniform() * (hi - lo);
    }
  }
  requests.sort((a, b) => a.arrivalS - b.arrivalS);
  requests.forEach((request, id) => {
    request.id = id;
  });
  return { spec, adapters, requests };
}
