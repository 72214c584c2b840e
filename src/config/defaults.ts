/** What `-f` defaults to: a small module, so the command line can name it without loading the loader. */
export const DEFAULT_DEFINITION = "bundle.yml";
