import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";

/**
 * Gives this test process's git commands a throw-away global configuration, so the developer's
 * own (insteadOf rules, credential helpers, protocol.version) cannot change what a test sees.
 * Call at the top of a test file: the environment is the whole process's.
 *
 * `via: "home"` writes `$HOME/.gitconfig` (the usual place); `via: "env"` points
 * GIT_CONFIG_GLOBAL at the file instead, the variable simple-git drops unless allowed.
 */
export interface GitHome {
  home: string;
  configFile: string;
  cleanup(): Promise<void>;
}

export async function useGitHome(config: string, via: "home" | "env" = "home"): Promise<GitHome> {
  const home = await mkdtemp(path.join(tmpdir(), "testbed-githome-"));
  const saved = { ...process.env };
  const configFile = via === "home" ? path.join(home, ".gitconfig") : path.join(home, "global.gitconfig");
  await mkdir(path.join(home, ".config"), { recursive: true });
  await writeFile(configFile, config);
  process.env.HOME = home;
  process.env.XDG_CONFIG_HOME = path.join(home, ".config");
  process.env.GIT_CONFIG_NOSYSTEM = "1";
  if (via === "env") process.env.GIT_CONFIG_GLOBAL = configFile;
  else delete process.env.GIT_CONFIG_GLOBAL;
  return {
    home,
    configFile,
    async cleanup() {
      for (const key of ["HOME", "XDG_CONFIG_HOME", "GIT_CONFIG_NOSYSTEM", "GIT_CONFIG_GLOBAL"]) {
        if (saved[key] === undefined) delete process.env[key];
        else process.env[key] = saved[key];
      }
      await rm(home, { recursive: true, force: true });
    },
  };
}
