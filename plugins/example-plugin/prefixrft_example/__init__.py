"""prefixrft-example-plugin: a verifier, a demonstrator and a benchmark registered through entry points."""
