/**
 * A tiny npm registry on 127.0.0.1: packuments and tarballs built in the test, every request
 * counted. Enough for `npm install` and `npm ci` (they ask for `/<name>` and the tarball URL the
 * packument names, and check the tarball against its `integrity`).
 */
import { createHash } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import * as tar from "tar";

export interface NpmPackageSpec {
  name: string;
  version: string;
  dependencies?: Record<string, string>;
  /** Paths inside the package (besides package.json) → content. */
  files: Record<string, string>;
  bin?: Record<string, string>;
}

export interface TestNpmRegistry {
  url: string;
  /** Every request's path, in order. */
  requests: string[];
  /** The package.json each published package carries, as written in its tarball. */
  manifests: Record<string, string>;
  close(): Promise<void>;
}

export async function startNpmRegistry(packages: NpmPackageSpec[]): Promise<TestNpmRegistry> {
  const requests: string[] = [];
  const tarballs = new Map<string, Buffer>();
  const manifests: Record<string, string> = {};
  const versions = new Map<string, Record<string, unknown>>();
  const server = http.createServer((req, res) => {
    const url = decodeURIComponent((req.url ?? "/").split("?")[0] ?? "/");
    requests.push(url);
    const tarball = tarballs.get(url);
    if (tarball) {
      res.writeHead(200, { "content-type": "application/octet-stream", "content-length": tarball.length });
      res.end(tarball);
      return;
    }
    const name = url.slice(1);
    const found = versions.get(name);
    if (!found) {
      res.writeHead(404, { "content-type": "application/json" }).end('{"error":"Not found"}');
      return;
    }
    const latest = Object.keys(found).at(-1) ?? "";
    const body = JSON.stringify({ name, "dist-tags": { latest }, versions: found });
    res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
    res.end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  const work = await mkdtemp(path.join(os.tmpdir(), "bundle-npm-registry-"));
  try {
    for (const [i, pkg] of packages.entries()) {
      const manifest = `${JSON.stringify(
        {
          name: pkg.name,
          version: pkg.version,
          ...(pkg.dependencies ? { dependencies: pkg.dependencies } : {}),
          ...(pkg.bin ? { bin: pkg.bin } : {}),
        },
        null,
        2,
      )}\n`;
      manifests[pkg.name] = manifest;
      const root = path.join(work, String(i));
      const files: Record<string, string> = { ...pkg.files, "package.json": manifest };
      for (const [rel, content] of Object.entries(files)) {
        await mkdir(path.dirname(path.join(root, "package", rel)), { recursive: true });
        await writeFile(path.join(root, "package", rel), content);
      }
      const file = path.join(work, `${i}.tgz`);
      await tar.c({ gzip: true, cwd: root, file, portable: true }, ["package"]);
      const data = await readFile(file);
      const tarballPath = `/${pkg.name}/-/${pkg.name}-${pkg.version}.tgz`;
      tarballs.set(tarballPath, data);
      const entry = {
        name: pkg.name,
        version: pkg.version,
        ...(pkg.dependencies ? { dependencies: pkg.dependencies } : {}),
        ...(pkg.bin ? { bin: pkg.bin } : {}),
        dist: {
          tarball: `${base}${tarballPath}`,
          shasum: createHash("sha1").update(data).digest("hex"),
          integrity: `sha512-${createHash("sha512").update(data).digest("base64")}`,
        },
      };
      versions.set(pkg.name, { ...versions.get(pkg.name), [pkg.version]: entry });
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  return {
    url: base,
    requests,
    manifests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
