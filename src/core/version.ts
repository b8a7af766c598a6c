/** The package version, read once from package.json (no build step rewrites it). */
import { readFileSync } from 'node:fs';

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };

export const VERSION: string = pkg.version;
/** What the infotext's `Version:` field says (A1111 writes its own version tag there, e.g. v1.9.4). */
export const INFOTEXT_VERSION = `loraserve v${VERSION}`;
