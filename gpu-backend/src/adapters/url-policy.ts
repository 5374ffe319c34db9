// Which URLs the backend may download adapter files from: only origins the operator
// named (the gateway's, whose signed URLs the `lorafleet` field carries). Checked before
// any connection is made, so a request cannot point the backend at an internal service
// (SSRF): a cloud metadata address, the executor's host, another tenant's store.
//
//   const policy = AdapterUrlPolicy.parse("https://gw.example.com,http://127.0.0.1:8787");
//   policy.check("https://gw.example.com/internal/adapters/ad_1/adapter_config.json?sig=…");

import { AdapterUrlRefused, redactUrl } from "./errors.ts";

export class AdapterUrlPolicy {
  readonly origins: readonly string[];

  constructor(origins: readonly string[]) {
    this.origins = origins;
  }

  /**
   * Parses a comma-separated list of origins (`scheme://host[:port]`, nothing else).
   * Throws a plain Error naming the bad entry, for the config to report.
   */
  static parse(list: string): AdapterUrlPolicy {
    const origins: string[] = [];
    for (const entry of list.split(",").map((part) => part.trim())) {
      if (entry === "") continue;
      let url: URL;
      try {
        url = new URL(entry);
      } catch {
        throw new Error(`${JSON.stringify(entry)} is not a URL`);
      }
      if (url.protocol !== "http:" && url.protocol !== "https:") {
        throw new Error(`${JSON.stringify(entry)}: only http and https origins are allowed`);
      }
      const bare =
        url.username === "" && url.password === "" && url.search === "" && url.hash === "";
      if (!bare || (url.pathname !== "/" && url.pathname !== "")) {
        throw new Error(`${JSON.stringify(entry)} is not an origin (scheme://host[:port] only)`);
      }
      origins.push(url.origin);
    }
    return new AdapterUrlPolicy(origins);
  }

  /** Throws AdapterUrlRefused unless `url` is plain http(s) on an allowed origin. */
  check(url: string): void {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new AdapterUrlRefused("adapter URL is not a valid URL");
    }
    if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
      throw new AdapterUrlRefused(
        `adapter URL scheme ${parsed.protocol} is refused: only http and https`,
      );
    }
    if (parsed.username !== "" || parsed.password !== "") {
      throw new AdapterUrlRefused("adapter URL carries credentials (user:password@): refused");
    }
    if (!this.origins.includes(parsed.origin)) {
      const allowed =
        this.origins.length === 0 ? "none (--adapter-url-allow is empty)" : this.origins.join(", ");
      throw new AdapterUrlRefused(
        `adapter URL origin ${parsed.origin} is not allowed (${redactUrl(url)}); allowed: ${allowed}`,
      );
    }
  }
}
