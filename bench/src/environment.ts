/**
 * Where a benchmark ran: the accelerator, its driver, the torch/triton/transformers/
 * peft versions the executor's Python sees, the git commit. Recorded in every result
 * so a figure can be traced to the exact code and machine.
 */
import { spawnSync } from "node:child_process";

export interface Environment {
  /** torch.cuda.get_device_name(), or "cpu" */
  device: string;
  /** NVIDIA driver version from nvidia-smi, or null without one */
  driver: string | null;
  cuda: string | null;
  torch: string | null;
  triton: string | null;
  transformers: string | null;
  peft: string | null;
  python: string;
  node: string;
  gitSha: string | null;
  /** uncommitted changes in the working tree when the run started */
  gitDirty: boolean;
}

const PROBE = `
import json, importlib
info = {}
for name in ["torch", "triton", "transformers", "peft"]:
    try:
        info[name] = importlib.import_module(name).__version__
    except Exception:
        info[name] = None
import torch
cuda = torch.cuda.is_available()
info["device"] = torch.cuda.get_device_name() if cuda else "cpu"
info["cuda"] = torch.version.cuda if cuda else None
print(json.dumps(info))
`;

export function probeEnvironment(python: string, repoRoot: string): Environment {
  const probe = spawnSync(python, ["-c", PROBE], { encoding: "utf8" });
  if (probe.status !== 0) {
    throw new Error(`environment probe with ${python} failed: ${probe.stderr || probe.error}`);
  }
  const info = JSON.parse(probe.stdout) as Record<string, string | null>;
  const smi = spawnSync("nvidia-smi", ["--query-gpu=driver_version", "--format=csv,noheader"], {
    encoding: "utf8",
  });
  const git = (...args: string[]) =>
    spawnSync("git", args, { cwd: repoRoot, encoding: "utf8" }).stdout?.trim() ?? "";
  return {
    device: info.device ?? "cpu",
    driver: smi.status === 0 ? (smi.stdout.trim().split("\n")[0] ?? null) : null,
    cuda: info.cuda ?? null,
    torch: info.torch ?? null,
    triton: info.triton ?? null,
    transformers: info.transformers ?? null,
    peft: info.peft ?? null,
    python,
    node: process.version,
    gitSha: git("rev-parse", "HEAD") || null,
    gitDirty: git("status", "--porcelain", "--untracked-files=no") !== "",
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
