import { useRef, useState } from "preact/hooks";
import { GatewayError } from "../../api/gateway-error.ts";
import {
  type AdapterFileName,
  adapterFileNames,
  fileOfError,
  localFileProblem,
  uploadAdapter,
} from "../../api/upload-adapter.ts";
import { formatBytes } from "../format.ts";
import { ErrorNotice } from "../notice.tsx";
import { clientOf, type Session } from "../session.ts";

const namePattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** Drop (or pick) the two PEFT files, name the adapter, upload with a progress bar. */
export function AdapterUpload({
  session,
  onUploaded,
}: {
  session: Session;
  onUploaded: () => void;
}) {
  const [files, setFiles] = useState<File[]>([]);
  const [name, setName] = useState("");
  const [over, setOver] = useState(false);
  const [progress, setProgress] = useState<{ sent: number; total: number } | null>(null);
  const [fileErrors, setFileErrors] = useState<Partial<Record<string, string>>>({});
  const [formError, setFormError] = useState<unknown>(null);
  const [done, setDone] = useState<string | null>(null);
  const input = useRef<HTMLInputElement>(null);

  function addFiles(list: FileList | null) {
    if (list === null) return;
    const byName = new Map(files.map((f) => [f.name, f]));
    for (const file of Array.from(list)) byName.set(file.name, file);
    const next = [...byName.values()];
    const errors: Record<string, string> = {};
    for (const file of next) {
      const problem = localFileProblem(file.name);
      if (problem) errors[file.name] = problem;
    }
    setFiles(next);
    setFileErrors(errors);
    setFormError(null);
    setDone(null);
  }

  const missing = adapterFileNames.filter((n) => !files.some((f) => f.name === n));
  const nameValid = namePattern.test(name);
  const ready =
    missing.length === 0 && Object.keys(fileErrors).length === 0 && nameValid && !progress;

  async function upload(event: Event) {
    event.preventDefault();
    const client = clientOf(session);
    setProgress({ sent: 0, total: files.reduce((s, f) => s + f.size, 0) });
    setFormError(null);
    try {
      const adapter = await uploadAdapter({
        baseUrl: client.baseUrl,
        authorization: client.authorization,
        name,
        files: files.filter((f) => !localFileProblem(f.name)),
        onProgress: (sent, total) => setProgress({ sent, total }),
      });
      setDone(`Uploaded ${adapter.name} (${adapter.status}).`);
      setFiles([]);
      setName("");
      onUploaded();
    } catch (error) {
      const file = error instanceof GatewayError ? fileOfError(error.code) : null;
      if (file && error instanceof GatewayError) {
        setFileErrors({ [file]: `${error.message} (${error.code})` });
      } else {
        setFormError(error);
      }
    } finally {
      setProgress(null);
    }
  }

  return (
    <form class="panel" onSubmit={upload} aria-labelledby="upload-heading">
      <h3 id="upload-heading">Upload a PEFT adapter</h3>
      {/* biome-ignore lint/a11y/noStaticElementInteractions: the drop target; the button inside is the keyboard path */}
      <div
        class={`dropzone${over ? " over" : ""}`}
        data-testid="dropzone"
        onDragOver={(e) => {
          e.preventDefault();
          setOver(true);
        }}
        onDragLeave={() => setOver(false)}
        onDrop={(e) => {
          e.preventDefault();
          setOver(false);
          addFiles(e.dataTransfer?.files ?? null);
        }}
      >
        <p>
          Drop <code>adapter_config.json</code> and <code>adapter_model.safetensors</code> here
        </p>
        <button type="button" onClick={() => input.current?.click()}>
          Choose files…
        </button>
        <input
          ref={input}
          id="adapter-files"
          type="file"
          multiple
          hidden
          aria-label="Adapter files"
          onChange={(e) => addFiles(e.currentTarget.files)}
        />
      </div>
      {files.length > 0 && (
        <ul class="file-list" aria-label="Files to upload">
          {files.map((file) => (
            <li key={file.name} data-file={file.name}>
              <code>{file.name}</code> · {formatBytes(file.size)}{" "}
              <button
                type="button"
                onClick={() => {
                  setFiles(files.filter((f) => f !== file));
                  const { [file.name]: _, ...rest } = fileErrors;
                  setFileErrors(rest);
                }}
                aria-label={`Remove ${file.name}`}
              >
                Remove
              </button>
              {fileErrors[file.name] && (
                <span class="file-error" role="alert">
                  {fileErrors[file.name]}
                </span>
              )}
            </li>
          ))}
          {missing.map((n: AdapterFileName) => (
            <li key={n} class="hint">
              Still needed: <code>{n}</code>
            </li>
          ))}
        </ul>
      )}
      <div class="row">
        <div class="field">
          <label for="adapter-name">Adapter name</label>
          <input
            id="adapter-name"
            value={name}
            onInput={(e) => setName(e.currentTarget.value)}
            aria-invalid={name !== "" && !nameValid}
            aria-describedby="adapter-name-hint"
          />
          <span id="adapter-name-hint" class="hint">
            Used as <code>model</code> in API calls; letters, digits, <code>. _ -</code>
          </span>
        </div>
        <div class="field">
          <button class="primary" type="submit" disabled={!ready}>
            Upload
          </button>
        </div>
      </div>
      {progress && (
        <div class="field">
          <label for="upload-progress">
            Uploading… {formatBytes(progress.sent)} of {formatBytes(progress.total)}
          </label>
          <progress id="upload-progress" max={progress.total} value={progress.sent} />
        </div>
      )}
      <ErrorNotice error={formError} />
      {done && (
        <p class="notice success" role="status">
          {done}
        </p>
      )}
    </form>
  );
}
