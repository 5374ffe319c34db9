// The values of an adapter's weights against the shared rules (rules.ts): every one
// finite, |A| and |B| · scale at most MAX_WEIGHT. Fed the data section in order, in
// pieces of any size, so a large upload is checked as it streams past.
//
// Only each tensor's largest magnitude is needed, and for IEEE floats the magnitudes
// order as their bits do once the sign is cleared: one integer max per element, no
// decoding; an exponent of all ones (inf, NaN) sits above every finite value.
import type { AdapterConfig } from "./config.ts";
import { AdapterRuleError, MAX_WEIGHT } from "./rules.ts";
import type { LoraTensor } from "./tensors.ts";

const FILE = "adapter_model.safetensors";

interface Format {
  bytes: 2 | 4;
  /** the bits of +inf: magnitudes at or above it are not finite */
  infinity: number;
  decode: (magnitudeBits: number) => number;
}

const scratch = new DataView(new ArrayBuffer(4));
const FORMATS: Record<string, Format> = {
  F32: {
    bytes: 4,
    infinity: 0x7f800000,
    decode: (bits) => {
      scratch.setUint32(0, bits);
      return scratch.getFloat32(0);
    },
  },
  BF16: {
    bytes: 2,
    infinity: 0x7f80,
    decode: (bits) => {
      scratch.setUint32(0, bits << 16);
      return scratch.getFloat32(0);
    },
  },
  F16: {
    bytes: 2,
    infinity: 0x7c00,
    decode: (bits) => {
      const exponent = bits >> 10;
      const fraction = bits & 0x3ff;
      return exponent === 0 ? fraction * 2 ** -24 : (1 + fraction / 1024) * 2 ** (exponent - 15);
    },
  },
};

/** Streams the data section past every weight's rule; `check` throws the first one broken. */
export class WeightValues {
  readonly #tensors: readonly LoraTensor[];
  readonly #byOffset: readonly LoraTensor[];
  readonly #scale: number;
  /** per tensor: the largest magnitude's bits so far */
  readonly #largest = new Map<LoraTensor, number>();
  /** bytes of the data section seen so far */
  #position = 0;
  /** the start of an element cut by the end of the last piece */
  #carry = new Uint8Array(0);

  constructor(tensors: readonly LoraTensor[], config: AdapterConfig) {
    this.#tensors = tensors;
    this.#byOffset = [...tensors].sort((a, b) => a.entry.begin - b.entry.begin);
    this.#scale = config.scale;
    for (const t of tensors) this.#largest.set(t, 0);
  }

  /** The next piece of the data section. */
  add(piece: Uint8Array): void {
    const bytes = this.#carry.length === 0 ? piece : concat(this.#carry, piece);
    const start = this.#position - this.#carry.length;
    let used = 0;
    for (const t of this.#byOffset) {
      const format = FORMATS[t.entry.dtype] as Format;
      const from = Math.max(t.entry.begin, start + used);
      const to = Math.min(t.entry.end, start + bytes.length);
      if (from >= to) continue;
      const whole = to - ((to - t.entry.begin) % format.bytes);
      if (whole > from) {
        const largest = largestBits(bytes.subarray(from - start, whole - start), format.bytes);
        this.#largest.set(t, Math.max(this.#largest.get(t) ?? 0, largest));
      }
      used = whole - start;
    }
    this.#position = start + bytes.length;
    this.#carry = bytes.slice(used);
  }

  /** Throws AdapterRuleError for the first weight (canonical order) that breaks a rule. */
  check(): void {
    for (const t of this.#tensors) {
      const format = FORMATS[t.entry.dtype] as Format;
      const bits = this.#largest.get(t) ?? 0;
      const what = `layer ${t.layer} ${t.module}_proj lora_${t.side}`;
      if (bits >= format.infinity) {
        throw new AdapterRuleError(
          "non_finite_weights",
          `${FILE}: ${what} holds values that are not finite`,
        );
      }
      const scaled = format.decode(bits) * (t.side === "B" ? this.#scale : 1);
      if (scaled > MAX_WEIGHT) {
        throw new AdapterRuleError(
          "weights_out_of_range",
          `${FILE}: ${what} holds values beyond ${MAX_WEIGHT}${t.side === "B" ? " once scaled" : ""} in magnitude`,
        );
      }
    }
  }
}

/** The largest sign-cleared element of little-endian `bytes` (whole elements of `size`). */
function largestBits(bytes: Uint8Array, size: 2 | 4): number {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let largest = 0;
  if (size === 4) {
    for (let i = 0; i < bytes.length; i += 4) {
      const bits = view.getUint32(i, true) & 0x7fffffff;
      if (bits > largest) largest = bits;
    }
  } else {
    for (let i = 0; i < bytes.length; i += 2) {
      const bits = view.getUint16(i, true) & 0x7fff;
      if (bits > largest) largest = bits;
    }
  }
  return largest;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}
