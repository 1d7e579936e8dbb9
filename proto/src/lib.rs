//! CRIU's image format: protobuf messages wire-compatible with CRIU's `images/*.proto`, CRIU's
//! magic numbers and framing, and crit-style JSON.
