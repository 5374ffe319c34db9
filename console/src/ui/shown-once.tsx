import { useState } from "preact/hooks";
import type { IssuedKey } from "../api/types.ts";

/** A new key's secret, shown this once, with a copy button. */
export function ShownOnce({ issued, onDismiss }: { issued: IssuedKey; onDismiss: () => void }) {
  const [copied, setCopied] = useState(false);
  return (
    <div class="notice success" role="status">
      <p>
        <strong>Copy this key now.</strong> It is shown only once; the gateway keeps only its hash.
      </p>
      <div class="secret">
        <code data-testid="new-key">{issued.key}</code>
        <button
          type="button"
          onClick={async () => {
            await navigator.clipboard.writeText(issued.key);
            setCopied(true);
          }}
        >
          {copied ? "Copied" : "Copy"}
        </button>
        <button type="button" onClick={onDismiss}>
          Done
        </button>
      </div>
    </div>
  );
}
