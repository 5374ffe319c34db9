"""A reference scheduler for tests and benchmarks, outside the product: a standalone
driver with its own page allocator that runs generation through the Executor without the
TypeScript engine, and a command line over it. The product package never imports it."""
