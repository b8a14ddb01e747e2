// Injected into the bundle (esbuild `inject`): CommonJS dependencies read __filename and
// __dirname, which an ES module lacks (require comes from the banner: esbuild's own helper
// looks for a variable named require). As an injected module (not a banner) esbuild renames
// these per chunk, so a split chunk's own top-level `__dirname` does not collide with them.
// Every chunk lies in the same lib dir, so this module's location is theirs.
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const shimFilename = fileURLToPath(import.meta.url);
const shimDirname = dirname(shimFilename);

export { shimFilename as __filename, shimDirname as __dirname };
