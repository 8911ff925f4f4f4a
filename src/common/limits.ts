/**
 * Limits on what Parallax reads, checked before anything is allocated or looped over. A
 * file is data from anywhere: a count or a depth it claims must not size an allocation or a
 * loop unchecked, or one crafted file crashes Node itself (an invalid-size abort, an out-of-
 * memory kill, a stack overflow) instead of earning one line of error.
 *
 * Each limit sits far above what real models and real multi-rank jobs reach, so it is only
 * ever met by a broken or hostile file; the comment says how far. RELIABILITY.md lists them.
 */

/**
 * Nesting of subgraphs (If/Loop/Scan bodies inside bodies). Exported models nest a handful
 * of levels (a Loop around an If); ONNX Runtime itself recurses per level, and 2,000 levels
 * overflow its stack and ours.
 */
export const MAX_GRAPH_DEPTH = 64;

/**
 * Nodes in a model, counted over the main graph and every subgraph. Large exported LLMs have
 * tens of thousands of nodes (a 70B decoder unrolled is about 30,000); a million is
 * beyond any model ONNX Runtime would load in reasonable time.
 */
export const MAX_MODEL_NODES = 1_000_000;

/**
 * Ranks in a distributed job (`distributedInfo.world_size`). The largest training jobs run
 * on about 100,000 GPUs; 2^24 leaves a wide margin and keeps every per-rank loop cheap.
 */
export const MAX_WORLD_SIZE = 2 ** 24;

/**
 * Spans in one trace. Millions of spans are normal for a long multi-rank job; 10^9 spans
 * would be about 60 GB of columns, beyond the memory of the machines this runs on.
 */
export const MAX_TRACE_SPANS = 1_000_000_000;

/**
 * Nesting of JSON objects and arrays in a trace file. Trace formats nest a few levels
 * (a document, its events, their args, a shape list); 5,000 levels of brackets overflow
 * recursive code that walks the document.
 */
export const MAX_JSON_DEPTH = 256;

/**
 * Decompression: a gzip stream may inflate to at most this many times its compressed size
 * once past {@link INFLATE_FREE_BYTES}. JSON traces compress 5–30×; highly repetitive ones
 * up to about 60×. A stream of zeros inflates about 1,000×, which is the bomb this stops.
 */
export const MAX_INFLATE_RATIO = 100;

/** Output a gzip stream may reach whatever its ratio, so small honest files never trip the ratio. */
export const INFLATE_FREE_BYTES = 16 * 2 ** 20;

/**
 * Output of one decompressed stream, whatever its ratio: traces of several GB are real (a
 * long multi-rank Kineto capture); 64 GiB is beyond what a streaming reader should be asked
 * to wade through on a workstation.
 */
export const MAX_INFLATED_BYTES = 64 * 2 ** 30;

/**
 * Rows in a batch (`--batch`). Tensors are allocated per row; a billion rows of even one
 * float are 4 GB per input, beyond what a profile needs to show where time goes.
 */
export const MAX_BATCH = 1_000_000;

/**
 * Elements of one synthesized input tensor. V8's typed arrays hold up to 2^32 elements on
 * 64-bit Node 20 builds with the sandbox off, fewer with it on; 2^30 (4 GB of float32) is
 * more than a profile's input ever needs.
 */
export const MAX_TENSOR_ELEMENTS = 2 ** 30;

/**
 * A duration or timestamp an importer accepts, in microseconds: about 31.7 years. Real
 * spans last nanoseconds to hours; clocks in traces are epoch-based (about 1.8e15 µs today),
 * so timestamps get a wider bound, {@link MAX_TIMESTAMP_US}.
 */
export const MAX_DURATION_US = 1e15;

/** Largest timestamp an importer accepts, µs: the year 2286 on an epoch clock. */
export const MAX_TIMESTAMP_US = 1e16;
