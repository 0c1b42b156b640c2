import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)
/** packer's version, from package.json (written into every manifest). */
export const VERSION: string = require('../package.json').version
