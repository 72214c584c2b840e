/**
 * The upload token check. Both sides are hashed first and the digests compared with
 * timingSafeEqual: equal lengths always, so neither the token's bytes nor its length leak
 * through the time an answer takes.
 */
import { createHash, timingSafeEqual } from "node:crypto";

export type AuthResult = "ok" | "no-token-configured" | "missing" | "wrong";

export class TokenCheck {
  private readonly expected: Buffer | undefined;

  constructor(token: string | undefined) {
    this.expected = token ? digest(token) : undefined;
  }

  check(authorization: string | undefined): AuthResult {
    if (!this.expected) return "no-token-configured";
    const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(authorization ?? "");
    if (!match?.[1]) return "missing";
    return timingSafeEqual(digest(match[1]), this.expected) ? "ok" : "wrong";
  }
}

function digest(token: string): Buffer {
  return createHash("sha256").update(token, "utf8").digest();
}
