/**
 * A one-line progress bar on a terminal stream, redrawn in place
 * (`\r`); on a pipe it writes only the final line, so logs stay clean.
 *
 * @example const bar = new ProgressBar(process.stderr, "upload", total); bar.update(n); bar.done();
 */
export class ProgressBar {
  readonly #out: NodeJS.WriteStream;
  readonly #label: string;
  readonly #total: number;
  #current = 0;

  constructor(out: NodeJS.WriteStream, label: string, total: number) {
    this.#out = out;
    this.#label = label;
    this.#total = Math.max(1, total);
  }

  line(): string {
    const fraction = Math.min(1, this.#current / this.#total);
    const width = 30;
    const filled = Math.round(fraction * width);
    const percent = `${Math.round(fraction * 100)}`.padStart(3);
    return `${this.#label} [${"#".repeat(filled)}${"-".repeat(width - filled)}] ${percent}% ${this.#current}/${this.#total} bytes`;
  }

  update(current: number): void {
    this.#current = current;
    if (this.#out.isTTY) this.#out.write(`\r${this.line()}`);
  }

  done(): void {
    this.#out.write(this.#out.isTTY ? "\n" : `${this.line()}\n`);
  }
}
