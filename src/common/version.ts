import pkg from '../../package.json';

/** Parallax's version, from package.json (inlined by the bundler). */
export const TOOL_VERSION: string = pkg.version;
