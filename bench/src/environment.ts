/**
 * Where a benchmark ran: the accelerator, its driver, the torch/triton/transformers/
 * peft versions the executor's Python sees, the git commit. Recorded in every result
 * so a figure can be traced to the exact code and machine.
 */
import { spawnSync } from "node:child_process";

export interface Environment {
  /** the GPU's name as nvidia-smi (and torch.cuda.get_device_name()) gives it, or "cpu" */
  device: string;
  /** NVIDIA driver version from nvidia-smi, or null without one */
  driver: string | null;
  torch: string | null;
  triton: string | null;
  transformers: string | null;
  peft: string | null;
  python: string;
  node: string;
  gitSha: string | null;
  /** uncommitted changes in the working tree when the run started; null where there is no git */
  gitDirty: boolean | null;
}

// Versions from package metadata, not imports: importing torch + transformers takes
// seconds, which the CPU smoke run cannot spare. The GPU's name comes from nvidia-smi
// (the same string torch.cuda.get_device_name() gives).
const PROBE = `
import json
from importlib.metadata import PackageNotFoundError, version
info = {}
for name in ["torch", "triton", "transformers", "peft"]:
    try:
        info[name] = version(name)
    except PackageNotFoundError:
        info[name] = None
print(json.dumps(info))
`;

/**
 * `gitShaGiven` (LORAFLEET_GIT_SHA) names the commit where git cannot: the GPU machine
 * gets a copy of the working tree whose .git, if any, is stale (it reported an old
 * commit as dirty), so a given sha wins and the tree's state is then unknown.
 */
export function probeEnvironment(
  python: string,
  repoRoot: string,
  gitShaGiven: string | null,
): Environment {
  const probe = spawnSync(python, ["-c", PROBE], { encoding: "utf8" });
  if (probe.status !== 0) {
    throw new Error(`environment probe with ${python} failed: ${probe.stderr || probe.error}`);
  }
  const info = JSON.parse(probe.stdout) as Record<string, string | null>;
  const smi = spawnSync(
    "nvidia-smi",
    ["--query-gpu=name,driver_version", "--format=csv,noheader"],
    {
      encoding: "utf8",
    },
  );
  // One line per GPU, "NVIDIA H100 80GB HBM3, 580.159.04": the first is the one used.
  const [gpu, driver] = smi.status === 0 ? (smi.stdout.split("\n")[0] ?? "").split(", ") : [];
  const git = (...args: string[]) => {
    const result = spawnSync("git", args, { cwd: repoRoot, encoding: "utf8" });
    return result.status === 0 ? result.stdout.trim() : null;
  };
  const sha = gitShaGiven ?? git("rev-parse", "HEAD");
  const status =
    gitShaGiven !== null || sha === null
      ? null
      : git("status", "--porcelain", "--untracked-files=no");
  return {
    device: gpu?.trim() || "cpu",
    driver: driver?.trim() || null,
    torch: info.torch ?? null,
    triton: info.triton ?? null,
    transformers: info.transformers ?? null,
    peft: info.peft ?? null,
    python,
    node: process.version,
    gitSha: sha,
    gitDirty: status === null ? null : status !== "",
  };
}

/** "NVIDIA H100 80GB HBM3" → "H100 80GB HBM3": the key of bench/results/summary.json. */
export function gpuName(device: string): string {
  return device.replace(/^NVIDIA\s+/, "");
}

/** "NVIDIA H100 80GB HBM3" → "h100-80gb-hbm3": the folder under bench/results/. */
export function deviceSlug(device: string): string {
  return gpuName(device)
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^-|-$/g, "");
}
