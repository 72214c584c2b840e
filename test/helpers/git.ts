import { execFile } from "node:child_process";
import { chmod, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { promisify } from "node:util";

const execFileAsync = promisify(execFile);

export interface GitFileSpec {
  content: string;
  executable?: boolean;
}

export interface GitCommitSpec {
  message: string;
  /** Paths relative to the repository root; folders are created as needed. */
  files?: Record<string, string | GitFileSpec>;
  remove?: string[];
}

export interface GitTagSpec {
  name: string;
  /** Index into the commits. */
  commit: number;
  /** Annotated tags get a tag object; lightweight ones are plain refs. */
  annotated?: boolean;
  message?: string;
}

export interface MakeGitRepoOptions {
  /** Default DEFAULT_COMMITS: nested folders, an executable script, three commits. */
  commits?: GitCommitSpec[];
  /** Default: lightweight v1.0.0 on the first commit, annotated v1.1.0 on the last. */
  tags?: GitTagSpec[];
  /** Adds helm/<chart>/Chart.yaml, values.yaml and a template to the first commit. */
  chart?: string;
  /** Default "main". */
  branch?: string;
}

export interface TestGitRepo {
  dir: string;
  /** file:// URL of dir, for clones. */
  url: string;
  branch: string;
  /** Full shas, in commit order. */
  commits: string[];
  /** Tag name → the commit it points at (annotated tags peeled). */
  tags: Record<string, string>;
  /** Tag name → what the ref itself names: the tag object for annotated tags. */
  tagObjects: Record<string, string>;
  cleanup(): Promise<void>;
}

export const DEFAULT_COMMITS: GitCommitSpec[] = [
  {
    message: "initial import",
    files: {
      "README.md": "# testbed repo\n",
      "src/nested/deep/hello.txt": "hello from a nested folder\n",
      "bin/run.sh": { content: "#!/bin/sh\necho run\n", executable: true },
    },
  },
  {
    message: "second change",
    files: { "README.md": "# testbed repo\n\nsecond version\n", "src/nested/other.txt": "other\n" },
  },
  {
    message: "third change",
    files: { "config/app.yaml": "replicas: 3\n" },
    remove: ["src/nested/other.txt"],
  },
];

/** Commit i is dated BASE_EPOCH + i hours, so the same options always give the same shas. */
const BASE_EPOCH = 1_704_067_200; // 2024-01-01T00:00:00Z
const IDENTITY = { name: "Testbed", email: "testbed@example.invalid" };

export async function makeGitRepo(opts: MakeGitRepoOptions = {}): Promise<TestGitRepo> {
  const dir = await mkdtemp(path.join(tmpdir(), "testbed-git-"));
  const cleanup = (): Promise<void> => rm(dir, { recursive: true, force: true });
  try {
    return { ...(await populate(dir, opts)), cleanup };
  } catch (error) {
    await cleanup();
    throw error;
  }
}

async function populate(dir: string, opts: MakeGitRepoOptions): Promise<Omit<TestGitRepo, "cleanup">> {
  const branch = opts.branch ?? "main";
  const specs = withChart(opts.commits ?? DEFAULT_COMMITS, opts.chart);
  await git(dir, ["init", "-q", "--initial-branch", branch]);
  await git(dir, ["config", "user.name", IDENTITY.name]);
  await git(dir, ["config", "user.email", IDENTITY.email]);
  const commits: string[] = [];
  for (const [index, spec] of specs.entries()) commits.push(await commit(dir, spec, index));
  const tagSpecs = opts.tags ?? [
    { name: "v1.0.0", commit: 0 },
    { name: "v1.1.0", commit: commits.length - 1, annotated: true, message: "release 1.1.0" },
  ];
  const tags: Record<string, string> = {};
  const tagObjects: Record<string, string> = {};
  for (const tag of tagSpecs) {
    await createTag(dir, tag, commits);
    tags[tag.name] = await git(dir, ["rev-parse", `${tag.name}^{commit}`]);
    tagObjects[tag.name] = await git(dir, ["rev-parse", tag.name]);
  }
  return { dir, url: pathToFileURL(dir).href, branch, commits, tags, tagObjects };
}

function withChart(specs: GitCommitSpec[], chart: string | undefined): GitCommitSpec[] {
  if (chart === undefined || specs.length === 0) return specs;
  const [first, ...rest] = specs;
  return [{ ...first!, files: { ...first!.files, ...chartFiles(chart) } }, ...rest];
}

export function chartFiles(name: string): Record<string, string> {
  const root = `helm/${name}`;
  return {
    [`${root}/Chart.yaml`]: `apiVersion: v2\nname: ${name}\nversion: 0.1.0\nappVersion: "1.0"\n`,
    [`${root}/values.yaml`]: `image:\n  repository: example/${name}\n  tag: "1.0"\nreplicas: 1\n`,
    [`${root}/templates/deployment.yaml`]:
      `apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: ${name}\nspec:\n  template:\n` +
      `    spec:\n      containers:\n        - name: ${name}\n` +
      `          image: "{{ .Values.image.repository }}:{{ .Values.image.tag }}"\n`,
  };
}

async function commit(dir: string, spec: GitCommitSpec, index: number): Promise<string> {
  for (const [file, value] of Object.entries(spec.files ?? {})) await writeRepoFile(dir, file, value);
  for (const file of spec.remove ?? []) await git(dir, ["rm", "-q", "--", file]);
  await git(dir, ["add", "-A"]);
  await git(dir, ["commit", "-q", "--allow-empty", "-m", spec.message], dateEnv(BASE_EPOCH + index * 3600));
  return git(dir, ["rev-parse", "HEAD"]);
}

async function writeRepoFile(dir: string, file: string, value: string | GitFileSpec): Promise<void> {
  const { content, executable } = typeof value === "string" ? { content: value, executable: false } : value;
  const target = path.join(dir, file);
  await mkdir(path.dirname(target), { recursive: true });
  await writeFile(target, content);
  // chmod explicitly: writeFile's mode is filtered by the umask.
  await chmod(target, executable ? 0o755 : 0o644);
}

async function createTag(dir: string, tag: GitTagSpec, commits: string[]): Promise<void> {
  const sha = commits[tag.commit];
  if (sha === undefined) throw new Error(`tag ${tag.name}: no commit #${tag.commit}`);
  if (!tag.annotated) {
    await git(dir, ["tag", tag.name, sha]);
    return;
  }
  // The tagger date comes from GIT_COMMITTER_DATE: half an hour after the tagged commit.
  const date = dateEnv(BASE_EPOCH + tag.commit * 3600 + 1800);
  await git(dir, ["tag", "-a", tag.name, "-m", tag.message ?? tag.name, sha], date);
}

function dateEnv(epochSeconds: number): Record<string, string> {
  const date = `${epochSeconds} +0000`;
  return { GIT_AUTHOR_DATE: date, GIT_COMMITTER_DATE: date };
}

/** Inherited GIT_DIR, GIT_INDEX_FILE etc. (say, from a hook) would point git elsewhere. */
function envWithoutGit(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith("GIT_")));
}

/**
 * Runs git in `dir` with the user's global and system configuration switched off, so that
 * settings such as commit.gpgsign or init.templateDir cannot change the shas.
 */
export async function git(dir: string, args: string[], env: Record<string, string> = {}): Promise<string> {
  try {
    const { stdout } = await execFileAsync("git", args, {
      cwd: dir,
      env: { ...envWithoutGit(), GIT_CONFIG_GLOBAL: "/dev/null", GIT_CONFIG_NOSYSTEM: "1", ...env },
      maxBuffer: 64 * 1024 * 1024,
    });
    return stdout.trim();
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr ?? "";
    throw new Error(`git ${args.join(" ")} failed in ${dir}: ${stderr.trim() || String(error)}`);
  }
}
